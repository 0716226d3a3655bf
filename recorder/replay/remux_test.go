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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/signaling/token"
)

// ffTool returns the path of ffmpeg or ffprobe, skipping the test when it
// is missing, unless CI is set, where that is a failure.
func ffTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed; skipping a test judged by real ffmpeg (apt-get install ffmpeg)", name)
	}
	return p
}

// twoPartyWebM has ffmpeg make a 6 s recording shaped like the recorder's:
// tracks patient/audio, patient/video, clinician/audio, clinician/video
// (numbers 1-4), the clinician joining at 1 s with their camera on from 2 s.
func twoPartyWebM(t *testing.T) []byte {
	t.Helper()
	return ffmpegFile(t,
		"-f", "lavfi", "-i", "sine=f=440:d=6:sample_rate=48000",
		"-f", "lavfi", "-i", "testsrc=d=6:s=160x120:r=15",
		"-itsoffset", "1", "-f", "lavfi", "-i", "sine=f=3000:d=5:sample_rate=48000",
		"-itsoffset", "2", "-f", "lavfi", "-i", "testsrc2=d=4:s=160x120:r=15",
		"-map", "0", "-map", "1", "-map", "2", "-map", "3",
		"-c:a", "libopus", "-c:v", "libvpx", "-b:v", "200k", "-g", "15",
		"-metadata:s:0", "title=patient/audio", "-metadata:s:1", "title=patient/video",
		"-metadata:s:2", "title=clinician/audio", "-metadata:s:3", "title=clinician/video")
}

// putConsultation stores body as a recording of patient pid with clinician
// doc, signed with tracks and events matching twoPartyWebM.
func putConsultation(t *testing.T, g *replayRig, pid, doc string, body []byte) string {
	t.Helper()
	rid := uuid.Must(uuid.NewV7()).String()
	webmKey, manKey, err := store.RecordingKeys(pid, "cons-1", rid)
	if err != nil {
		t.Fatal(err)
	}
	info, err := g.st.Put(context.Background(), webmKey, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	p := manifest.Predicate{
		Consultation: "cons-1", Patient: pid, RecordingID: rid, Started: started, Ended: started.Add(6 * time.Second),
		SizeBytes: info.Size, RecorderVersion: "test",
		Participants: []manifest.Participant{{ID: pid, Role: "patient", Joined: started}, {ID: doc, Role: "clinician", Joined: started}},
		Tracks: []manifest.Track{
			{Number: 1, Participant: pid, Kind: "audio", Codec: "opus", LastMS: 5980},
			{Number: 2, Participant: pid, Kind: "video", Codec: "vp8", LastMS: 5933},
			{Number: 3, Participant: doc, Kind: "audio", Codec: "opus", FirstMS: 1000, LastMS: 5980},
			{Number: 4, Participant: doc, Kind: "video", Codec: "vp8", FirstMS: 2000, LastMS: 5933},
		},
		Events: []manifest.Event{{Type: "joined", Participant: pid}, {Type: "joined", Participant: doc},
			{Type: "upgrade", Participant: pid, OffsetMS: 0, Path: "prenegotiated"}, {Type: "upgrade", Participant: doc, OffsetMS: 2000, Path: "renegotiation"}},
	}
	signStored(t, g, p, info.SHA256, body, manKey)
	g.refresh()
	return rid
}

// probeStreams lists codec, start time and decoded frame count of each
// stream of the WebM in b, by ffprobe.
func probeStreams(t *testing.T, b []byte) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stream.webm")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffTool(t, "ffprobe"), "-v", "error", "-count_frames",
		"-show_entries", "stream=codec_name,start_time,nb_read_frames", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	dec, err := exec.Command(ffTool(t, "ffmpeg"), "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(dec)) != 0 {
		t.Errorf("ffmpeg decoding the stream complains: %v %s", err, dec)
	}
	return strings.Fields(string(out))
}

// TestParticipantStreams: each participant's stream holds exactly their
// own audio and video, every frame of them, at the recording's timestamps
// (the clinician, who joined late, still starts at 1 s and their video at
// 2 s), and decodes cleanly; the
// timeline names people by role, marks the viewer and when each camera was
// on; what is not theirs or not there looks missing.
func TestParticipantStreams(t *testing.T) {
	g, _, _ := localRig(t)
	body := twoPartyWebM(t)
	rid := putConsultation(t, g, "patient-s", "dr-s", body)
	whole := probeStreams(t, body)
	t.Logf("recording: codec,start,frames per track: %v", whole)
	tok := g.token("patient-s", token.RolePatient, time.Now().Add(time.Hour))

	r := g.get(replay.Path+"/"+rid+"/timeline", tok)
	var tl replay.Timeline
	if err := json.Unmarshal(r.body, &tl); r.status != http.StatusOK || err != nil {
		t.Fatalf("timeline: %d %s %v", r.status, r.body, err)
	}
	if bytes.Contains(r.body, []byte("patient-s")) || bytes.Contains(r.body, []byte("dr-s")) {
		t.Errorf("timeline names people by id: %s", r.body)
	}
	if len(tl.Participants) != 2 || tl.Participants[0].Label != "patient" || !tl.Participants[0].You ||
		tl.Participants[1].Label != "clinician" || tl.Participants[1].You || tl.DurationMS != 6000 {
		t.Fatalf("timeline participants: %s", r.body)
	}
	if v := tl.Participants[1].VideoOn; len(v) != 1 || v[0] != (replay.Span{FromMS: 2000, ToMS: 6000}) {
		t.Errorf("clinician's camera on %+v, want 2000-6000", v)
	}
	for i, p := range tl.Participants {
		r := g.get(p.Stream, tok)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "video/webm" {
			t.Fatalf("%s's stream: %d %s", p.Label, r.status, r.body)
		}
		got := probeStreams(t, r.body)
		want := slices.Clone(whole[2*i : 2*i+2]) // "codec,start,frames" of their audio and video
		if p.Label == "clinician" {
			// Joined at 1 s: one silent frame at 0 starts their stream on
			// the recording's clock; their own frames keep their times.
			want[0] = "opus,-0.007000,252"
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s's stream: %v; want their tracks of the recording unchanged: %v", p.Label, got, want)
		}
		part := g.get(p.Stream, tok, "Range", "bytes=0-99")
		if part.status != http.StatusPartialContent || !bytes.Equal(part.body, r.body[:100]) {
			t.Errorf("%s's stream, range: %d", p.Label, part.status)
		}
	}
	if start, _ := strconv.ParseFloat(strings.Split(whole[2], ",")[1], 64); start < 0.9 {
		t.Errorf("fixture: clinician audio starts at %v s, want 1", start)
	}

	other := g.token("patient-x", token.RolePatient, time.Now().Add(time.Hour))
	for _, c := range []struct{ name, path, tok string }{
		{"a guest that is not in it", "/guest.webm", tok},
		{"second clinician", "/clinician-2.webm", tok},
		{"another patient's timeline", "/timeline", other},
		{"another patient's stream", "/patient.webm", other},
		{"unknown part", "/manifest", tok},
		{"track path", "/patient/audio", tok},
	} {
		if r := g.get(replay.Path+"/"+rid+c.path, c.tok); r.status != http.StatusNotFound || string(r.body) != replayNotFound {
			t.Errorf("%s: %d %s; want the 404 of a missing recording", c.name, r.status, r.body)
		}
	}
	_, evs := g.auditLines()
	var parts []string
	for _, ev := range evs {
		if ev.Action == replay.AuditView {
			parts = append(parts, ev.Part)
		}
	}
	if got := fmt.Sprint(parts); got != "[timeline patient.webm patient.webm clinician.webm clinician.webm]" {
		t.Errorf("audited views %s", got)
	}
}
