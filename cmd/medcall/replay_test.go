package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/replay/replaytest"
	"github.com/medcall/medcall/signaling/client"
)

// The replay API as `medcall serve` mounts it (replay.go), judged against a
// cluster: every node answers alike, a consultation that moved between
// nodes plays as one, and nobody sees or hears another patient's.

// TestClusterPatientsStayApart runs the cross-patient checks of a single
// node against three `medcall serve` processes sharing one Redis and one
// store: live (as signaling's TestTwentyConsultationsStayApart: six
// recorded consultations joined through random entry nodes, half upgraded
// by renegotiation, half pre-negotiated; nobody receives a packet from
// another consultation, and what each hears is what its partner sent) and
// replay (as recorder/replay's TestReplayRefusalsLookMissing, through every
// node: each person lists and hears only their own consultation; another
// patient's recording, a join token, a token in the query, a path that
// climbs out, all answer as a missing recording).
func TestClusterPatientsStayApart(t *testing.T) {
	r := startClusterRig(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pairs := recordedPairs(t, r, 6)
	joinPairs(ctx, t, r, pairs, true)
	nodes := map[string]bool{}
	for _, p := range pairs {
		if _, err := p.pat.WaitReceived(ctx, "d-"+p.pid, "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
			t.Fatalf("%s: the patient never heard the clinician: %v", p.cid, err)
		}
		nodes[p.pat.URL()] = true
	}
	t.Logf("6 consultations on %d nodes", len(nodes))
	time.Sleep(time.Second) // more media in the recordings
	checkNoStrangers(t, pairs)
	for _, p := range pairs {
		_ = p.pat.Leave(ctx)
		_ = p.doc.Leave(ctx)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(r.recordings()) < len(pairs) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := len(r.recordings()); got != len(pairs) {
		t.Fatalf("%d recordings stored, want %d", got, len(pairs))
	}
	checkClusterReplay(t, r, pairs, nil)
}

// replayDo is GET url with extra headers (name, value pairs).
func replayDo(t *testing.T, url string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// checkRefusals: on node addr, what recorder/replay's
// TestReplayRefusalsLookMissing refuses is refused as a missing recording
// is, p asking about q's recording and their own: a byte range of q's, a
// join token (not a replay token) for q's consultation or their own, no
// token, a token in the query string, q's object key climbed to by "../"
// (plain and escaped), their own id in upper case.
func checkRefusals(t *testing.T, r *clusterRig, addr string, p, q *pair, own, theirs replayEntry, replayTok string, missing []byte) {
	t.Helper()
	base := "http://" + addr + "/v1/recordings/"
	joinQ := mintCmd(t, "--data", r.data[0], "--role", "clinician", "--sub", "d-"+p.pid, "--pid", q.pid, "--cid", q.cid)
	key := "patients/" + q.pid + "/consultations/" + q.cid + "/" + theirs.ID + ".webm"
	for _, c := range []struct {
		name, path string
		hdr        []string
	}{
		{"another patient's recording, a range", theirs.ID, []string{"Authorization", "Bearer " + replayTok, "Range", "bytes=0-3"}},
		{"a join token for the other consultation", theirs.ID, []string{"Authorization", "Bearer " + joinQ}},
		{"their own join token", own.ID, []string{"Authorization", "Bearer " + p.patO.Token}},
		{"no token", own.ID, nil},
		{"a token in the query", own.ID + "?access_token=" + replayTok, nil},
		{"a token in the query and the header", own.ID + "?token=" + replayTok, []string{"Authorization", "Bearer " + replayTok}},
		{"the other's object key by ../", "../../" + key, []string{"Authorization", "Bearer " + replayTok}},
		{"the other's object key by %2e%2e%2f", "%2e%2e%2f%2e%2e%2f" + strings.ReplaceAll(key, "/", "%2F"), []string{"Authorization", "Bearer " + replayTok}},
		{"their own id in upper case", strings.ToUpper(own.ID), []string{"Authorization", "Bearer " + replayTok}},
	} {
		if code, body := replayDo(t, base+c.path, c.hdr...); code != 404 || !bytes.Equal(body, missing) {
			t.Errorf("%s, %s: %d %s; want the 404 of a missing recording", addr, c.name, code, body)
		}
	}
}

// giveTones gives each participant of pairs an audio clip of a tone of its
// own (patient 200 Hz + 120·i, clinician 60 Hz above; up to 60 pairs, below
// 7.4 kHz, which Opus at 24 kbit/s keeps), so that what a replayed stream
// plays can be told apart by ear: whose it is and that nobody else's is in
// it.
func giveTones(t *testing.T, pairs []*pair) {
	t.Helper()
	if len(pairs) > 60 {
		t.Fatalf("%d consultations: at most 60 get tones of their own", len(pairs))
	}
	ffmpeg, dir := needTool(t, "ffmpeg"), t.TempDir()
	for i, p := range pairs {
		p.patHz, p.docHz = 200+120*i, 260+120*i
		for _, c := range []struct {
			hz int
			o  *string
		}{{p.patHz, &p.patO.AudioFile}, {p.docHz, &p.docO.AudioFile}} {
			*c.o = filepath.Join(dir, fmt.Sprintf("tone%d.ogg", c.hz))
			// As testdata/make-fixtures.sh makes audio.ogg.
			cmd := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000:duration=10", c.hz),
				"-ac", "2", "-c:a", "libopus", "-b:a", "24k", "-frame_duration", "20", "-application", "voip", "-page_duration", "20000", *c.o)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg tone %d Hz: %v %s", c.hz, err, out)
			}
		}
	}
}

// replayEntry is one consultation in GET /v1/recordings.
type replayEntry struct {
	ID           string `json:"id"`
	Consultation string `json:"consultation"`
	DurationMS   int64  `json:"duration_ms"`
	Segments     []struct {
		ID         string `json:"id"`
		DurationMS int64  `json:"duration_ms"`
		Recovered  bool   `json:"recovered"`
	} `json:"segments"`
}

// replayList is GET /v1/recordings on node addr with tok.
func replayList(t *testing.T, addr, tok string) []replayEntry {
	t.Helper()
	code, body := replayGet(t, "http://"+addr+"/v1/recordings", tok)
	var l struct {
		Recordings []replayEntry `json:"recordings"`
	}
	if err := json.Unmarshal(body, &l); code != 200 || err != nil {
		t.Fatalf("replay list on %s: %d %s", addr, code, body)
	}
	return l.Recordings
}

// checkClusterReplay: on every node, each patient and each clinician lists
// exactly their own consultation, in as many segments as it was recorded
// in (two, the first recovered, for a moved one), its duration the
// segments' added up; every segment of every other consultation (of five
// others each, in a long run), its timeline and streams, answer them
// exactly as a missing recording does, as
// do the other refusals of one node (checkRefusals).
// Then what plays is heard: each participant's stream of their
// consultation, decoded by ffmpeg, plays their own tone in every segment,
// no window holds another participant's tone, and it lasts as long as the
// consultation.
func checkClusterReplay(t *testing.T, r *clusterRig, pairs, moved []*pair) {
	t.Helper()
	type who struct{ patient, clinician string }
	toks := map[*pair]who{}
	for _, p := range pairs {
		toks[p] = who{mintCmd(t, "--data", r.data[0], "--replay", "--role", "patient", "--sub", p.pid),
			mintCmd(t, "--data", r.data[0], "--replay", "--role", "clinician", "--sub", "d-"+p.pid)}
	}
	entry := map[*pair]replayEntry{}
	for i, node := range r.nodes {
		for _, p := range pairs {
			want := 1
			if slices.Contains(moved, p) {
				want = 2
			}
			l := replayList(t, node.addr, toks[p].patient)
			// A clinician's list comes from the node's index, refreshed every 10 s.
			deadline := time.Now().Add(25 * time.Second)
			ld := replayList(t, node.addr, toks[p].clinician)
			for (len(ld) != 1 || len(ld[0].Segments) != want) && time.Now().Before(deadline) {
				time.Sleep(500 * time.Millisecond)
				ld = replayList(t, node.addr, toks[p].clinician)
			}
			if len(l) != 1 || len(ld) != 1 || l[0].Consultation != p.cid || ld[0].ID != l[0].ID || len(ld[0].Segments) != len(l[0].Segments) {
				t.Fatalf("node %d: %s's patient lists %+v, its clinician %+v; want that one consultation alone", i, p.cid, l, ld)
			}
			e := l[0]
			sum := int64(0)
			for _, s := range e.Segments {
				sum += s.DurationMS
			}
			if len(e.Segments) != want || e.DurationMS != sum || (want == 2 && (!e.Segments[0].Recovered || e.Segments[1].Recovered)) {
				t.Errorf("node %d: %s listed as %+v; want %d segments (a moved one's first recovered), duration their sum", i, p.cid, e, want)
			}
			if prev, ok := entry[p]; ok && fmt.Sprint(prev) != fmt.Sprint(e) {
				t.Errorf("node %d lists %s as %+v, another node as %+v", i, p.cid, e, prev)
			}
			entry[p] = e
		}
		_, missing := replayGet(t, "http://"+node.addr+"/v1/recordings/00000000-0000-7000-8000-000000000000", toks[pairs[0]].patient)
		checkRefusals(t, r, node.addr, pairs[0], pairs[1], entry[pairs[0]], entry[pairs[1]], toks[pairs[0]].patient, missing)
		for k, p := range pairs {
			for d := 1; d <= min(len(pairs)-1, 5); d++ { // all others in CI; five of them in a long run
				q := pairs[(k+d)%len(pairs)]
				paths := []string{entry[q].ID + "/timeline", entry[q].ID + "/patient.webm", entry[q].ID + "/clinician.webm"}
				for _, s := range entry[q].Segments {
					paths = append(paths, s.ID, s.ID+"/timeline")
				}
				for _, path := range paths {
					for _, tok := range []string{toks[p].patient, toks[p].clinician} {
						if code, body := replayGet(t, "http://"+node.addr+"/v1/recordings/"+path, tok); code != 404 || !bytes.Equal(body, missing) {
							t.Errorf("node %d: %s's participant asking for %s of %s: %d %s; want the 404 of a missing recording", i, p.cid, path, q.cid, code, body)
						}
					}
				}
			}
		}
	}
	var tones []float64
	for _, p := range pairs {
		tones = append(tones, float64(p.patHz), float64(p.docHz))
	}
	for k, p := range pairs {
		hearConsultation(t, r.nodes[k%len(r.nodes)].addr, toks[p].patient, p, entry[p], tones)
	}
}

// hearConsultation fetches the timeline and both participants' streams of
// consultation e and judges what they play.
func hearConsultation(t *testing.T, addr, tok string, p *pair, e replayEntry, tones []float64) {
	t.Helper()
	base := "http://" + addr + "/v1/recordings/" + e.ID
	code, body := replayGet(t, base+"/timeline", tok)
	var tl struct {
		DurationMS   int64 `json:"duration_ms"`
		Participants []struct {
			Label   string `json:"label"`
			VideoOn []struct {
				FromMS int64 `json:"from_ms"`
			} `json:"video_on"`
		} `json:"participants"`
		Segments []struct {
			ID          string `json:"id"`
			OffsetMS    int64  `json:"offset_ms"`
			DurationMS  int64  `json:"duration_ms"`
			GapBeforeMS int64  `json:"gap_before_ms"`
		} `json:"segments"`
	}
	if err := json.Unmarshal(body, &tl); code != 200 || err != nil || len(tl.Segments) != len(e.Segments) || tl.DurationMS != e.DurationMS {
		t.Fatalf("%s's timeline: %d %s; want its %d segments, %d ms", p.cid, code, body, len(e.Segments), e.DurationMS)
	}
	if len(tl.Participants) != 2 || tl.Participants[0].Label != "patient" || tl.Participants[1].Label != "clinician" {
		t.Errorf("%s's timeline participants: %s", p.cid, body)
	}
	last := tl.Segments[len(tl.Segments)-1]
	if v := tl.Participants[0].VideoOn; len(v) == 0 || v[len(v)-1].FromMS < last.OffsetMS {
		t.Errorf("%s: the patient's camera is not on in the last segment: %s", p.cid, body)
	}
	for _, c := range []struct {
		label string
		hz    int
	}{{"patient", p.patHz}, {"clinician", p.docHz}} {
		code, stream := replayGet(t, base+"/"+c.label+".webm", tok)
		path := filepath.Join(t.TempDir(), c.label+".webm")
		if err := os.WriteFile(path, stream, 0o600); code != 200 || err != nil {
			t.Fatalf("%s's %s stream: %d %v", p.cid, c.label, code, err)
		}
		decodesClean(t, path)
		heard, err := replaytest.Listen(needTool(t, "ffmpeg"), path, 250*time.Millisecond, tones)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s's %s stream, segments %+v: plays %.2f s of %d ms; heard per %v: %s", p.cid, c.label, tl.Segments, heard.Seconds, tl.DurationMS, heard.Window, heard.Runs())
		if d := float64(tl.DurationMS) / 1000; heard.Seconds > d+0.1 || heard.Seconds < d-1.5 {
			t.Errorf("%s's %s stream plays %.2f s; the consultation lasts %.2f s", p.cid, c.label, heard.Seconds, d)
		}
		for w, share := range heard.Share {
			for i, f := range tones {
				if int(f) != c.hz && share != nil && share[i] > 0.1 {
					t.Errorf("%s's %s stream at %.2f s: %.0f %% of the sound is %v Hz, another participant's tone", p.cid, c.label, heard.Window.Seconds()*float64(w), 100*share[i], f)
				}
			}
		}
		for _, s := range tl.Segments {
			own := 0
			for w, tone := range heard.Tone {
				if at := int64(w) * heard.Window.Milliseconds(); at >= s.OffsetMS && at < s.OffsetMS+s.DurationMS && tone == float64(c.hz) {
					own++
				}
			}
			if secs := float64(own) * heard.Window.Seconds(); secs < 1 {
				t.Errorf("%s's %s stream: their own tone heard for %.2f s in segment %s (%d ms at %d ms); want at least 1 s", p.cid, c.label, secs, s.ID, s.DurationMS, s.OffsetMS)
			}
		}
	}
}
