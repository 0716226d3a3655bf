package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// TestNetnsChild runs the parts of the network tests that must live inside
// a network namespace (the server, each participant), as child processes of
// the test binary.
func TestNetnsChild(t *testing.T) {
	netns.Child(t, map[string]func([]string) error{
		"serve": func(args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return run(ctx, append([]string{"serve"}, args...), os.Stdout, os.Stderr)
		},
		"participant": runParticipant,
		"check": func(args []string) error {
			err := run(context.Background(), append([]string{"check"}, args...), os.Stdout, os.Stdout)
			fmt.Printf("CHECK EXIT %v\n", err)
			return nil
		},
		"scrape": func(args []string) error {
			b, err := json.Marshal(scrape(t, args[0]))
			fmt.Printf("METRICS %s\n", b)
			return err
		},
	})
}

// nsServe runs `medcall serve ARGS` inside ns and returns once it serves;
// it is stopped with SIGTERM (a graceful shutdown) when the test ends.
func nsServe(t testing.TB, ns *netns.NS, args ...string) (stop func()) {
	t.Helper()
	cmd := ns.Func(context.Background(), "serve", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = tbLog{t, "serve: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "medcall is serving on") {
				once = true
				close(serving)
			} else if strings.Contains(sc.Text(), "FAIL") || strings.Contains(sc.Text(), "netns child") {
				t.Log("serve: " + sc.Text())
			}
		}
	}()
	select {
	case <-serving:
	case <-exited:
		t.Fatal("serve exited inside the namespace before serving; see its output above")
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start inside the namespace")
	}
	done := false
	stop = func() {
		if done {
			return
		}
		done = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// nsScrape reads the admin /metrics of a server whose admin listener is
// addr inside ns.
func nsScrape(t *testing.T, ns *netns.NS, addr string) map[string]float64 {
	t.Helper()
	out, err := ns.Func(context.Background(), "scrape", addr).Output()
	if err != nil {
		t.Fatalf("scrape %s in %s: %v", addr, ns.Name, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(l, "METRICS "); ok {
			m := map[string]float64{}
			if err := json.Unmarshal([]byte(j), &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("scrape %s in %s printed no metrics: %s", addr, ns.Name, out)
	return nil
}

// peerConfig is what a participant child is told.
type peerConfig struct {
	URL, Token, Peer string // Peer: the other participant's id, whose media we wait for
	Prenegotiate     bool
	ICETCP           bool
	Video            bool
	CA               string // PEM file to trust for wss://
	KeepAudio        bool   // keep received audio for the heard command (netchange_test.go)
}

// runParticipant joins as one Go client and then obeys commands on its
// standard input, one per line, answering each with one line "OK ..." or
// "ERR ..." on its standard output:
//
//	wait KIND N   wait for N packets of the peer's KIND (and a keyframe for
//	              video); answers the first packet's and keyframe's Unix ns
//	upgrade PATH  turn video on; answers the Unix ns the upgrade started
//	pair          answers the publish connection's selected pair
//	received KIND answers Unix ms, packets, bytes and expected packets of
//	              the peer's KIND so far
//	candidates    answers the server's candidates as protocol:address:port
//	leave         leaves and exits
//
// Joining answers "OK joined START END" (Unix ns around Dial).
func runParticipant(args []string) error {
	var pc peerConfig
	if err := json.Unmarshal([]byte(args[0]), &pc); err != nil {
		return err
	}
	testdata, _ := filepath.Abs("../../testdata")
	o := client.Options{URL: pc.URL, Token: pc.Token, AudioFile: filepath.Join(testdata, "audio.ogg"),
		Prenegotiate: pc.Prenegotiate, ICETCP: pc.ICETCP, KeepAudio: pc.KeepAudio}
	if pc.Video {
		o.VideoFile = filepath.Join(testdata, "video.ivf")
	}
	if pc.CA != "" {
		hc, err := httpClientTrusting(pc.CA)
		if err != nil {
			return err
		}
		o.HTTPClient = hc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := client.Dial(ctx, o)
	if err != nil {
		fmt.Printf("ERR join: %v\n", err)
		return err
	}
	defer c.Close()
	fmt.Printf("OK joined %d %d\n", start.UnixNano(), time.Now().UnixNano())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		reply, err := participantCommand(ctx, c, pc.Peer, f)
		if err != nil {
			fmt.Printf("ERR %s: %v\n", f[0], err)
			continue
		}
		fmt.Println("OK " + reply)
		if f[0] == "leave" {
			return nil
		}
	}
	return sc.Err()
}

func participantCommand(ctx context.Context, c *client.Client, peer string, f []string) (string, error) {
	switch {
	case f[0] == "wait" && len(f) == 3:
		var n uint64
		fmt.Sscan(f[2], &n)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := c.WaitReceived(wctx, peer, f[1], func(s client.TrackStats) bool {
			return s.Packets >= n && (f[1] != "video" || s.Keyframes > 0)
		})
		if err != nil {
			return "", fmt.Errorf("%s from %s: %w (got %d packets)", f[1], peer, err, st.Packets)
		}
		return fmt.Sprintf("wait %d %d %d", st.FirstPacket.UnixNano(), st.FirstKeyframe.UnixNano(), st.Packets), nil
	case f[0] == "upgrade" && len(f) == 2:
		at := time.Now()
		return fmt.Sprintf("upgrade %d", at.UnixNano()), c.Upgrade(ctx, f[1])
	case f[0] == "pair":
		p, ok := c.SelectedPair(sfu.PCPublish)
		if !ok {
			return "", fmt.Errorf("no pair selected")
		}
		return fmt.Sprintf("pair %s %s %s", p.Local, p.Remote, p.Protocol), nil
	case f[0] == "received" && len(f) == 2:
		st := c.Received(peer, f[1])
		return fmt.Sprintf("received %d %d %d %d", time.Now().UnixMilli(), st.Packets, st.Bytes, st.Expected), nil
	case f[0] == "candidates": // the server's candidates' addresses, space-separated
		var addrs []string
		for _, cand := range c.ServerCandidates() {
			if f := strings.Fields(cand); len(f) > 5 {
				addrs = append(addrs, f[2]+":"+f[4]+":"+f[5]) // protocol:address:port
			}
		}
		return "candidates " + strings.Join(addrs, " "), nil
	case f[0] == "leave":
		return "leave", c.Leave(ctx)
	case f[0] == "quiet": // goes quiet: sends nothing more, stays in the call
		c.StopSending()
		return "quiet", nil
	case f[0] == "heard" || f[0] == "churn" || f[0] == "restarts":
		return netChangeCommand(ctx, c, peer, f)
	}
	return "", fmt.Errorf("unknown command %q", strings.Join(f, " "))
}

// peerProc is a running participant child.
type peerProc struct {
	t     testing.TB
	name  string
	in    io.WriteCloser
	lines chan string
}

// startPeer starts a participant inside ns and waits for its join.
func startPeer(t testing.TB, ns *netns.NS, name string, pc peerConfig) (*peerProc, []string) {
	t.Helper()
	cfg, _ := json.Marshal(pc)
	cmd := ns.Func(context.Background(), "participant", string(cfg))
	cmd.Stderr = tbLog{t, name + ": "}
	in, out := startPiped(t, cmd)
	p := &peerProc{t: t, name: name, in: in, lines: make(chan string, 16)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "OK ") || strings.HasPrefix(l, "ERR ") {
				p.lines <- l
			}
		}
	}()
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	return p, p.reply(90 * time.Second)
}

func (p *peerProc) reply(within time.Duration) []string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("%s exited without answering", p.name)
		}
		if strings.HasPrefix(l, "ERR ") {
			p.t.Fatalf("%s: %s", p.name, l)
		}
		return strings.Fields(l)[2:] // after "OK" and the command's name
	case <-time.After(within):
		p.t.Fatalf("%s did not answer within %v", p.name, within)
	}
	return nil
}

// do sends one command and returns the fields of its answer after "OK".
func (p *peerProc) do(command string) []string {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	return p.reply(60 * time.Second)
}

// tbLog logs each line written through t.Log with a prefix (logWriter for
// benchmarks too).
type tbLog struct {
	t      testing.TB
	prefix string
}

func (w tbLog) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(b), nil
}

// mintTB is mintCmd for benchmarks too: `medcall token ARGS`.
func mintTB(t testing.TB, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"token"}, args...), &out, io.Discard); err != nil {
		t.Fatalf("token %v: %v", args, err)
	}
	return strings.TrimSpace(out.String())
}
