package check

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// imageConfig is the part of `podman image inspect` the test runs by.
type imageConfig struct {
	Size   int64
	Config struct {
		User, WorkingDir string
		Entrypoint, Cmd  []string
		Env              []string
		ExposedPorts     map[string]struct{}
	}
}

// TestImage builds the image twice with deploy/image/build.sh (same id:
// reproducible), checks it is small, has no shell and runs as a non-root
// user, then starts `medcall serve` from it and requires /healthz and
// /readyz to answer. It runs the image with `podman run` where the runtime
// can start containers; where it cannot (crun refused to set rlimits inside
// this build sandbox), it runs the image's own entrypoint, user and
// environment from its mounted root filesystem under chroot instead, and
// says which in the log.
func TestImage(t *testing.T) {
	podman := needTool(t, "podman", "Debian package podman")
	const tag = "localhost/medcall:check"
	build := func() string {
		cmd := exec.Command("bash", "deploy/image/build.sh", tag)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("deploy/image/build.sh: %v\n%s", err, exitStderr(err))
		}
		lines := strings.Fields(string(out))
		return lines[len(lines)-1]
	}
	id1, id2 := build(), build()
	if id1 != id2 {
		t.Errorf("two builds of the same source gave images %s and %s; the build is not reproducible", id1, id2)
	}
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", tag).Run() })
	out, err := exec.Command(podman, "image", "inspect", tag).Output()
	if err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	var cfgs []imageConfig
	if err := json.Unmarshal(out, &cfgs); err != nil || len(cfgs) != 1 {
		t.Fatalf("podman image inspect: %v %s", err, out)
	}
	img := cfgs[0]
	if img.Config.User != "65532:65532" || len(img.Config.Entrypoint) != 1 {
		t.Fatalf("image runs as %q with entrypoint %v; want 65532:65532 and the medcall binary", img.Config.User, img.Config.Entrypoint)
	}
	if img.Size > 40<<20 {
		t.Errorf("image is %d MiB; want a small static image", img.Size>>20)
	}
	t.Logf("image %s: %.1f MiB, user %s, entrypoint %v %v", id1[:12], float64(img.Size)/(1<<20), img.Config.User, img.Config.Entrypoint, img.Config.Cmd)

	addr, admin := freeLoopback(t), freeLoopback(t)
	args := []string{"serve", "--addr", addr, "--admin-addr", admin}
	how, pid := runWithPodman(t, podman, tag, args)
	if pid == 0 {
		how, pid = runFromRootfs(t, podman, tag, img, args)
	}
	t.Logf("ran the image with %s", how)
	body := waitHTTP(t, "http://"+admin+"/healthz", 20*time.Second)
	if strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz from the image: %q", body)
	}
	if body := waitHTTP(t, "http://"+admin+"/readyz", 5*time.Second); strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz from the image: %q (the data directory must be writable by the image's user)", body)
	}
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "Uid:" && f[1] == "0" {
				t.Errorf("medcall from the image runs as root: %s", line)
			}
		}
	}
}

// runWithPodman starts the image with podman run on the host's network and
// returns the server's pid, or 0 when the runtime cannot start containers.
func runWithPodman(t *testing.T, podman, tag string, args []string) (string, int) {
	name := fmt.Sprintf("medcall-check-%d", os.Getpid())
	run := append([]string{"run", "-d", "--rm", "--name", name, "--network", "host", "--read-only", "--cap-drop", "ALL", tag}, args...)
	out, err := exec.Command(podman, run...).CombinedOutput()
	if err != nil {
		t.Logf("podman run cannot start the image here: %v: %s", err, strings.TrimSpace(string(out)))
		_ = exec.Command(podman, "rm", "-f", name).Run()
		return "", 0
	}
	t.Cleanup(func() { _ = exec.Command(podman, "stop", "-t", "10", name).Run() })
	pid, _ := exec.Command(podman, "inspect", "--format", "{{.State.Pid}}", name).Output()
	var n int
	fmt.Sscan(string(pid), &n)
	return "podman run --network host --read-only --cap-drop ALL", n
}

// runFromRootfs copies the image's root filesystem out of `podman image
// mount` and runs its entrypoint with its user, environment and working
// directory under chroot.
func runFromRootfs(t *testing.T, podman, tag string, img imageConfig, args []string) (string, int) {
	mnt, err := exec.Command(podman, "image", "mount", tag).Output()
	if err != nil {
		t.Fatalf("podman image mount: %v %s", err, exitStderr(err))
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", strings.TrimSpace(string(mnt))+"/.", root+"/").CombinedOutput(); err != nil {
		_ = os.MkdirAll(root, 0o755)
		if out, err = exec.Command("cp", "-a", strings.TrimSpace(string(mnt))+"/.", root+"/").CombinedOutput(); err != nil {
			t.Fatalf("copy the image's root filesystem: %v %s", err, out)
		}
	}
	_ = exec.Command(podman, "image", "unmount", tag).Run()
	for _, sh := range []string{"bin/sh", "bin/bash", "usr/bin/sh"} {
		if _, err := os.Stat(filepath.Join(root, sh)); err == nil {
			t.Errorf("the image has a shell (%s)", sh)
		}
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Fatal("chroot (coreutils) not found")
	}
	cmd := exec.Command(chroot, append([]string{"--userspec=" + img.Config.User, "--groups=", root}, append(img.Config.Entrypoint, args...)...)...)
	cmd.Env = img.Config.Env
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	return "chroot --userspec=" + img.Config.User + " into the image's root filesystem (podman image mount), the image's entrypoint and environment", cmd.Process.Pid
}

func waitHTTP(t *testing.T, u string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(u)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no 200 within %v (last error %v)", u, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
