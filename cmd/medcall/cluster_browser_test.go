package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// TestBrowserFollowsRedirect: a consultation is placed on one node of two
// (its patient, a Go client, joined there); headless Chromium opens the demo
// page on the other node and joins with medcall.js through that node's
// socket. The browser ends up on the hosting node: the patient is told the
// clinician joined and hears the browser's (fake) microphone.
func TestBrowserFollowsRedirect(t *testing.T) {
	node := needBrowser(t)

	r := startClusterRig(t, 2, "--allowed-origins", "127.0.0.1:*")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pat, err := client.Dial(ctx, client.Options{URL: r.url(0), AudioFile: "../../testdata/audio.ogg",
		Token: mintCmd(t, "--data", r.data[0], "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")})
	if err != nil {
		t.Fatal(err)
	}
	defer pat.Close()
	entry := 0
	if pat.URL() == r.url(0) {
		entry = 1
	}
	cmd := exec.CommandContext(ctx, node, "redirect.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "MEDCALL_URL=http://"+r.nodes[entry].addr, "MEDCALL_CHROMIUM="+chromiumPath(),
		"MEDCALL_TOKEN="+mintCmd(t, "--data", r.data[0], "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1"))
	cmd.Stderr = logWriter{t, "node stderr: "}
	stdin, stdout := startPiped(t, cmd)
	sc := bufio.NewScanner(stdout)
	joinedOn, passed := "", false
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		switch {
		case strings.HasPrefix(line, "RESULT joined_on "):
			joinedOn = strings.TrimPrefix(line, "RESULT joined_on ")
			if _, err := pat.WaitEvent(ctx, func(m signaling.Message) bool {
				return m.Type == signaling.TypeParticipant && m.Event == "joined" && m.Participant != nil && m.Participant.ID == "d-1"
			}); err != nil {
				t.Errorf("the patient on the hosting node was never told the browser joined: %v", err)
			} else if _, err := pat.WaitReceived(ctx, "d-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
				t.Errorf("the patient never heard the browser: %v", err)
			}
			fmt.Fprintln(stdin, "done")
			_ = stdin.Close()
		case line == "E2E PASS":
			passed = true
		}
	}
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("browser redirect script failed (exit %v)", err)
	}
	if joinedOn != pat.URL() {
		t.Errorf("the browser's socket is on %q, want the hosting node %s (entered at %s)", joinedOn, pat.URL(), r.url(entry))
	}
}
