package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/recorder/replay/replaytest"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/signaling/token"
)

// toneWebM has ffmpeg make a recording shaped like the recorder's, secs
// long: patient/audio (a patHz tone), patient/video and clinician/audio (a
// docHz tone), tracks 1-3.
func toneWebM(t *testing.T, secs, patHz, docHz int) []byte {
	t.Helper()
	return ffmpegFile(t, "-f", "lavfi", "-i", fmt.Sprintf("sine=f=%d:d=%d:sample_rate=48000", patHz, secs),
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc=d=%d:s=160x120:r=15", secs),
		"-f", "lavfi", "-i", fmt.Sprintf("sine=f=%d:d=%d:sample_rate=48000", docHz, secs),
		"-map", "0", "-map", "1", "-map", "2",
		"-c:a", "libopus", "-c:v", "libvpx", "-b:v", "100k", "-g", "15",
		"-metadata:s:0", "title=patient/audio", "-metadata:s:1", "title=patient/video", "-metadata:s:2", "title=clinician/audio")
}

// ffmpegFile runs ffmpeg with args and an output WebM, and returns its bytes.
func ffmpegFile(t *testing.T, args ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.webm")
	cmd := exec.Command(ffTool(t, "ffmpeg"), append(append([]string{"-v", "error"}, args...), out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// segSpec is one recording of a consultation, signed as the recorder signs
// a segment: prev names the recording it continues.
type segSpec struct {
	pid, cid, doc, prev string
	started             time.Time
	secs                int
	body                []byte // nil: no media (the index alone is tested)
	recovered           bool   // finalized after a crash: it ends where its last frame starts
}

// putSegment stores s with a signed manifest and returns its id.
func putSegment(t *testing.T, g *replayRig, s segSpec) string {
	t.Helper()
	rid := uuid.Must(uuid.NewV7()).String()
	webmKey, manKey, err := store.RecordingKeys(s.pid, s.cid, rid)
	if err != nil {
		t.Fatal(err)
	}
	body := s.body
	if body == nil {
		body = []byte("segment " + rid)
	}
	info, err := g.st.Put(context.Background(), webmKey, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	d := int64(s.secs) * 1000
	p := manifest.Predicate{
		Consultation: s.cid, Patient: s.pid, RecordingID: rid, Previous: s.prev, Started: s.started,
		Ended: s.started.Add(time.Duration(d) * time.Millisecond), SizeBytes: info.Size, RecorderVersion: "test",
		Participants: []manifest.Participant{{ID: s.pid, Role: "patient", Joined: s.started}, {ID: s.doc, Role: "clinician", Joined: s.started}},
		Tracks: []manifest.Track{{Number: 1, Participant: s.pid, Kind: "audio", Codec: "opus", LastMS: d - 20},
			{Number: 2, Participant: s.pid, Kind: "video", Codec: "vp8", LastMS: d - 67},
			{Number: 3, Participant: s.doc, Kind: "audio", Codec: "opus", LastMS: d - 20}},
		Events: []manifest.Event{{Type: "joined", Participant: s.pid}, {Type: "joined", Participant: s.doc},
			{Type: "upgrade", Participant: s.pid, OffsetMS: 0, Path: "prenegotiated"}},
	}
	if s.recovered { // as medcall recover finalizes a spool: it ends at its last frame's start
		p.Recovered, p.Ended = true, s.started.Add(time.Duration(d-20)*time.Millisecond)
	}
	signStored(t, g, p, info.SHA256, body, manKey)
	return rid
}

// signStored signs p about the stored body (sha256 its digest) with chunk
// digests and stores the manifest at manKey.
func signStored(t *testing.T, g *replayRig, p manifest.Predicate, sha256 string, body []byte, manKey string) {
	t.Helper()
	st, err := manifest.NewStatement(p, sha256)
	if err != nil {
		t.Fatal(err)
	}
	if st.Predicate.Chunks, _, err = manifest.ComputeChunks(bytes.NewReader(body), manifest.MinChunkSize*16); err != nil {
		t.Fatal(err)
	}
	env, err := manifest.Sign(g.mkeys, st)
	if err != nil {
		t.Fatal(err)
	}
	putBytes(t, g.st, manKey, env)
}

// consultations lists what tok sees: per consultation, its segments' ids.
func consultations(t *testing.T, g *replayRig, tok string) []string {
	t.Helper()
	r := g.get(replay.Path, tok)
	var lb struct {
		Recordings []struct {
			ID         string `json:"id"`
			DurationMS int64  `json:"duration_ms"`
			Segments   []struct {
				ID string `json:"id"`
			} `json:"segments"`
		} `json:"recordings"`
	}
	if err := json.Unmarshal(r.body, &lb); r.status != http.StatusOK || err != nil {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var out []string
	for _, c := range lb.Recordings {
		var segs []string
		for _, s := range c.Segments {
			segs = append(segs, s.ID)
		}
		if len(segs) == 0 || segs[0] != c.ID {
			t.Errorf("list entry %s: segments %v do not start with it", c.ID, segs)
		}
		out = append(out, strings.Join(segs, "+"))
	}
	return out
}

// TestSegmentsPlayAsOneConsultation: a consultation recorded in two
// segments (6 s, recovered after its node died, then 4 s unrecorded, then
// 6 s, the second naming the first) is one entry, one 12 s timeline and one stream per participant
// in which ffmpeg hears the first segment's tone for 6 s, then the
// second's; recordings that name a segment of it as previous but belong to
// another patient (a clinician sees both) or another consultation of the
// same patient are never joined in, and not one window of their sound
// plays in its streams.
func TestSegmentsPlayAsOneConsultation(t *testing.T) {
	g, _, _ := localRig(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	first := putSegment(t, g, segSpec{pid: "pat-k", cid: "cons-k", doc: "dr-k", started: t0, secs: 6, body: toneWebM(t, 6, 440, 2000), recovered: true})
	next := putSegment(t, g, segSpec{pid: "pat-k", cid: "cons-k", doc: "dr-k", prev: first, started: t0.Add(10 * time.Second), secs: 6, body: toneWebM(t, 6, 660, 2600)})
	// Signed manifests that name k's segments as previous, as a recorder
	// or cluster bug could: another patient (dr-k is in both), and another
	// consultation of pat-k.
	otherPatient := putSegment(t, g, segSpec{pid: "pat-z", cid: "cons-z", doc: "dr-k", prev: first, started: t0.Add(8 * time.Second), secs: 6, body: toneWebM(t, 6, 880, 3200)})
	otherCons := putSegment(t, g, segSpec{pid: "pat-k", cid: "cons-k2", doc: "dr-k", prev: next, started: t0.Add(20 * time.Second), secs: 6, body: toneWebM(t, 6, 1000, 3600)})
	g.refresh()
	if a := g.alerts.take(); a[replay.AlertChainMismatch] != 2 {
		t.Errorf("alerts %v, want %s twice", a, replay.AlertChainMismatch)
	}

	patK := g.token("pat-k", token.RolePatient, time.Now().Add(time.Hour))
	drK := g.token("dr-k", token.RoleClinician, time.Now().Add(time.Hour))
	patZ := g.token("pat-z", token.RolePatient, time.Now().Add(time.Hour))
	for _, c := range []struct {
		who, tok string
		want     []string
	}{
		{"pat-k", patK, []string{first + "+" + next, otherCons}},
		{"dr-k", drK, []string{first + "+" + next, otherPatient, otherCons}},
		{"pat-z", patZ, []string{otherPatient}},
	} {
		if got := consultations(t, g, c.tok); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s's list %v, want %v", c.who, got, c.want)
		}
	}

	for _, rid := range []string{first, next} { // either segment's id gives the consultation
		r := g.get(replay.Path+"/"+rid+"/timeline", drK)
		var tl replay.Timeline
		if err := json.Unmarshal(r.body, &tl); r.status != http.StatusOK || err != nil {
			t.Fatalf("timeline by %s: %d %s", rid, r.status, r.body)
		}
		if tl.ID != first || tl.DurationMS != 12000 || len(tl.Segments) != 2 || tl.Segments[1].ID != next ||
			tl.Segments[1].OffsetMS != 6000 || tl.Segments[1].GapBeforeMS != 4000 || tl.Segments[0].GapBeforeMS != 0 {
			t.Errorf("timeline by %s: %s", rid, r.body)
		}
		if len(tl.Participants) != 2 || tl.Participants[0].Stream != replay.Path+"/"+first+"/patient.webm" ||
			len(tl.Participants[0].VideoOn) != 2 || tl.Participants[0].VideoOn[1] != (replay.Span{FromMS: 6000, ToMS: 12000}) {
			t.Errorf("timeline participants by %s: %+v", rid, tl.Participants)
		}
	}
	if r := g.get(replay.Path+"/"+otherPatient+"/timeline", patK); r.status != http.StatusNotFound || string(r.body) != replayNotFound {
		t.Errorf("pat-k asking for pat-z's segment that names theirs: %d %s", r.status, r.body)
	}

	ffmpeg := ffTool(t, "ffmpeg")
	tones := []float64{440, 660, 880, 1000, 2000, 2600, 3200, 3600}
	for _, c := range []struct{ label, want string }{
		{"patient", "440×12 660×12"},
		{"clinician", "2000×12 2600×12"},
	} {
		for _, tok := range []string{patK, drK} {
			r := g.get(replay.Path+"/"+first+"/"+c.label+".webm", tok)
			if r.status != http.StatusOK {
				t.Fatalf("%s's stream: %d %s", c.label, r.status, r.body)
			}
			path := filepath.Join(t.TempDir(), c.label+".webm")
			if err := os.WriteFile(path, r.body, 0o600); err != nil {
				t.Fatal(err)
			}
			heard, err := replaytest.Listen(ffmpeg, path, 500*time.Millisecond, tones)
			if err != nil {
				t.Fatal(err)
			}
			if heard.Runs() != c.want || heard.Seconds < 11.9 || heard.Seconds > 12.1 {
				t.Errorf("%s's stream plays %s over %.2f s; want %s over 12 s (each segment's own tone, nobody else's)", c.label, heard.Runs(), heard.Seconds, c.want)
			}
			probeStreams(t, r.body) // decodes cleanly
		}
	}
	_, evs := g.auditLines()
	views := map[string]int{}
	for _, ev := range evs {
		if ev.Action == replay.AuditView {
			views[ev.Recording]++
		}
	}
	if views[first] != 6 || views[next] != 6 || views[otherPatient]+views[otherCons] != 0 {
		t.Errorf("audited views per recording %v; want each segment audited for every timeline and stream served", views)
	}
}

// TestSegmentsOnlyWhatTheViewerMaySee: a clinician who was only in the
// second segment sees that one alone; a segment hidden after failing
// verification breaks the chain there; of two segments naming one
// previous, the first to start continues it and the other stands alone.
func TestSegmentsOnlyWhatTheViewerMaySee(t *testing.T) {
	g, _, _ := localRig(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	s1 := putSegment(t, g, segSpec{pid: "pat-m", cid: "cons-m", doc: "dr-1", started: t0, secs: 5})
	s2 := putSegment(t, g, segSpec{pid: "pat-m", cid: "cons-m", doc: "dr-2", prev: s1, started: t0.Add(6 * time.Second), secs: 5})
	s3 := putSegment(t, g, segSpec{pid: "pat-m", cid: "cons-m", doc: "dr-2", prev: s2, started: t0.Add(12 * time.Second), secs: 5})
	fork := putSegment(t, g, segSpec{pid: "pat-m", cid: "cons-m", doc: "dr-2", prev: s2, started: t0.Add(13 * time.Second), secs: 5})
	g.refresh()
	tok := func(sub, role string) string { return g.token(sub, role, time.Now().Add(time.Hour)) }
	for _, c := range []struct {
		who, tok string
		want     []string
	}{
		{"pat-m", tok("pat-m", token.RolePatient), []string{s1 + "+" + s2 + "+" + s3, fork}},
		{"dr-1", tok("dr-1", token.RoleClinician), []string{s1}},
		{"dr-2", tok("dr-2", token.RoleClinician), []string{s2 + "+" + s3, fork}},
	} {
		if got := consultations(t, g, c.tok); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s's list %v, want %v", c.who, got, c.want)
		}
	}
	if r := g.get(replay.Path+"/"+s1+"/timeline", tok("dr-2", token.RoleClinician)); r.status != http.StatusNotFound {
		t.Errorf("dr-2 asking for the segment they were not in: %d %s", r.status, r.body)
	}

	// s2's bytes are changed in the store: the next read hides it.
	webm, _, _ := store.RecordingKeys("pat-m", "cons-m", s2)
	putBytes(t, g.st, webm, []byte("segment "+s2[:len(s2)-1]+"X"))
	pat := tok("pat-m", token.RolePatient)
	if r := g.get(replay.Path+"/"+s2, pat); r.status != http.StatusNotFound {
		t.Fatalf("tampered segment served: %d", r.status)
	}
	if got := consultations(t, g, pat); strings.Join(got, " ") != strings.Join([]string{s1, s3, fork}, " ") {
		t.Errorf("after s2 is hidden pat-m sees %v, want s1, s3 and the fork apart", got)
	}
}
