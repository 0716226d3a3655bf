package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// Helpers of the quality tests: a Chromium participant (e2e/quality.mjs)
// inside a namespace and the arithmetic on what its page reported.

// qsample is one SAMPLE line of quality.mjs: the page's cumulative counters
// ("t" is Date.now() in ms).
type qsample map[string]float64

// qualityPage is a running quality.mjs.
type qualityPage struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	in   interface{ Write([]byte) (int, error) }

	mu      sync.Mutex
	samples []qsample
	marks   map[string]float64 // UPGRADE, FIRSTFRAME: Unix ms
	joined  chan struct{}
	done    chan bool // true when the page hung up cleanly
}

// needQualityTools skips (or fails under CI) without node, playwright-core,
// Chromium and ffmpeg.
func needQualityTools(t *testing.T) (node string) {
	t.Helper()
	node = needBrowser(t)
	_, err := exec.LookPath("ffmpeg")
	needBrowserTool(t, err == nil, "ffmpeg", "install it with: apt-get install -y ffmpeg")
	return node
}

// noisyCamera writes a 640x480 30 fps clip full of noise (Chromium loops
// it), so the publisher's VP8 encoder spends all the bitrate it is allowed:
// about 1 Mbit/s and more, like a real camera in a lit room.
func noisyCamera(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "noisy.y4m")
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30",
		"-vf", "noise=alls=12:allf=t", "-t", "3", "-pix_fmt", "yuv420p", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: make the fake camera clip: %v: %s", err, out)
	}
	return f
}

// startQualityPage runs quality.mjs in ns as role ("publish" or "watch") and
// waits until it has joined.
func startQualityPage(t *testing.T, ns *netns.NS, node, name, base, token, role, video string) *qualityPage {
	t.Helper()
	cmd := ns.Command(context.Background(), node, "quality.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "MEDCALL_URL="+base, "MEDCALL_TOKEN="+token, "MEDCALL_ROLE="+role,
		"MEDCALL_VIDEO="+video, "MEDCALL_CHROMIUM="+chromiumPath())
	cmd.Stderr = logWriter{t, name + " stderr: "}
	in, out := startPiped(t, cmd)
	p := &qualityPage{t: t, name: name, cmd: cmd, in: in, joined: make(chan struct{}), done: make(chan bool, 1), marks: map[string]float64{}}
	go func() {
		passed := false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "JOINED":
				close(p.joined)
			case strings.HasPrefix(l, "SAMPLE "):
				var s qsample
				if json.Unmarshal([]byte(l[len("SAMPLE "):]), &s) == nil {
					p.mu.Lock()
					p.samples = append(p.samples, s)
					p.mu.Unlock()
				}
			case strings.HasPrefix(l, "UPGRADE ") || strings.HasPrefix(l, "FIRSTFRAME "):
				k, v, _ := strings.Cut(l, " ")
				ms, _ := strconv.ParseFloat(v, 64)
				p.mu.Lock()
				p.marks[k] = ms
				p.mu.Unlock()
			case l == "E2E PASS":
				passed = true
			default:
				t.Log(name + ": " + l)
			}
		}
		p.done <- passed
	}()
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	select {
	case <-p.joined:
	case <-p.done:
		t.Fatalf("%s exited before joining; see its output above", name)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not join within 60s", name)
	}
	return p
}

// stop hangs up and fails the test unless the page did so cleanly.
func (p *qualityPage) stop() {
	p.t.Helper()
	_, _ = fmt.Fprintln(p.in, "stop")
	select {
	case ok := <-p.done:
		if !ok {
			p.t.Errorf("%s did not hang up cleanly; see its output above", p.name)
		}
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not hang up within 30s", p.name)
	}
}

// snapshot is a copy of the samples so far.
func (p *qualityPage) snapshot() []qsample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]qsample(nil), p.samples...)
}

// mark is when the page printed the event name (Unix ms), 0 if it has not.
func (p *qualityPage) mark(name string) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.marks[name]
}

// window is the change of counters between the first sample at or after from
// and the last sample at or before to (Unix ms).
type window struct{ a, b qsample }

func between(ss []qsample, from, to float64) (window, bool) {
	var w window
	for _, s := range ss {
		if s["t"] >= from && w.a == nil {
			w.a = s
		}
		if s["t"] <= to {
			w.b = s
		}
	}
	return w, w.a != nil && w.b != nil && w.b["t"] > w.a["t"]
}

func (w window) seconds() float64       { return (w.b["t"] - w.a["t"]) / 1000 }
func (w window) delta(k string) float64 { return w.b[k] - w.a[k] }
func (w window) rate(k string) float64  { return w.delta(k) / w.seconds() }

// sentKbps is what a publishing page sent (audio and video with headers), kbit/s.
func (w window) sentKbps() float64 {
	return (w.rate("videoBytesSent") + w.rate("audioBytesSent")) * 8 / 1000
}

// perceived is what a watching page perceived over a window.
type perceived struct {
	fps, freezePct, audioLossPct, concealedPct float64
}

// perceived is what the page perceived between from and to (Unix ms).
// Chromium adds a freeze's whole length to totalFreezesDuration when it
// ends, so a freeze that began before from counts only from from on: each
// increase, seen at a sample, is taken to span the time just before it.
func perceivedBetween(ss []qsample, from, to float64) (perceived, bool) {
	w, ok := between(ss, from, to)
	if !ok {
		return perceived{}, false
	}
	p := w.perceived()
	frozen := 0.0
	for i := 1; i < len(ss); i++ {
		d := (ss[i]["freezeSec"] - ss[i-1]["freezeSec"]) * 1000
		end := ss[i]["t"]
		if d > 0 && end > from && end-d < to {
			frozen += min(end, to) - max(end-d, from)
		}
	}
	p.freezePct = 100 * frozen / (to - from)
	return p, true
}

func (w window) perceived() perceived {
	var p perceived
	p.fps = w.rate("framesDecoded")
	p.freezePct = 100 * w.delta("freezeSec") / w.seconds()
	if n := w.delta("audioPacketsReceived") + w.delta("audioPacketsLost"); n > 0 {
		p.audioLossPct = 100 * w.delta("audioPacketsLost") / n
	}
	if n := w.delta("samples"); n > 0 {
		p.concealedPct = 100 * w.delta("concealed") / n
	}
	return p
}

func (p perceived) String() string {
	return fmt.Sprintf("decoded %.1f fps, freeze %.1f%%, audio loss %.2f%%, audio concealed %.2f%%",
		p.fps, p.freezePct, p.audioLossPct, p.concealedPct)
}

// perSecond formats one value per second from start (Unix ms) to the last
// sample, for the report.
func perSecond(ss []qsample, start float64, value func(from, to float64) (string, bool)) string {
	var b strings.Builder
	for s := start; len(ss) > 0 && s+1000 <= ss[len(ss)-1]["t"]; s += 1000 {
		if v, ok := value(s, s+1000); ok {
			fmt.Fprintf(&b, "%+.0fs:%s ", (s-start)/1000, v)
		}
	}
	return b.String()
}

// bitrateSeries is a publishing page's send rate, kbit/s per second.
func bitrateSeries(ss []qsample, start float64) string {
	return perSecond(ss, start, func(from, to float64) (string, bool) {
		w, ok := between(ss, from, to)
		return fmt.Sprintf("%.0f", w.sentKbps()), ok
	})
}

// perceivedSeries is a watching page's decoded fps and frozen share per second.
func perceivedSeries(ss []qsample, start float64) string {
	return perSecond(ss, start, func(from, to float64) (string, bool) {
		p, ok := perceivedBetween(ss, from, to)
		w, _ := between(ss, from, to)
		return fmt.Sprintf("%.0ffps/%.0f%%/%.0fk/%.0fp", p.fps, p.freezePct, w.delta("keyFrames"), w.delta("pliSent")), ok
	})
}

// encodedSeries is a publishing page's encoded fps and frame width per
// second: what the encoder made of the rate it was given.
func encodedSeries(ss []qsample, start float64) string {
	return perSecond(ss, start, func(from, to float64) (string, bool) {
		w, ok := between(ss, from, to)
		return fmt.Sprintf("%.0ffps/%.0fw", w.rate("framesEncoded"), w.b["sentWidth"]), ok
	})
}
