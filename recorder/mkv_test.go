package recorder

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// The writer's file has a known Segment size, a cue on every keyframe of
// every video track pointing at a cluster that starts at that keyframe,
// audio cues only where no video plays, and the Duration filled in.
func TestMKVWriterLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.webm")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tracks := []webm.TrackEntry{
		{Name: "patient/audio", TrackNumber: 1, TrackUID: 1, CodecID: "A_OPUS", TrackType: 2, CodecPrivate: opusHead(1),
			Audio: &webm.Audio{SamplingFrequency: 48000, Channels: 1}},
		{Name: "patient/video", TrackNumber: 2, TrackUID: 2, CodecID: "V_VP8", TrackType: 1, DefaultDuration: 66_000_000,
			Video: &webm.Video{PixelWidth: 320, PixelHeight: 240}},
		{Name: "clinician/video", TrackNumber: 3, TrackUID: 3, CodecID: "V_VP8", TrackType: 1, DefaultDuration: 66_000_000,
			Video: &webm.Video{PixelWidth: 320, PixelHeight: 240}},
	}
	m, err := newMKVWriter(f, webm.Info{TimecodeScale: 1_000_000, MuxingApp: "medcall", WritingApp: "medcall"}, tracks)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		track uint64
		ms    int64
	}
	var videoKeys []key
	// 0-4 s audio only; from 4 s patient video, keyframe every 3 s; from
	// 5 s clinician video, keyframe every 2.5 s; audio throughout to 12 s.
	for ms := int64(0); ms < 12000; ms++ {
		if ms%20 == 0 {
			mustDo(t, m.frame(1, ms, true, []byte{0x08, 1, 2}))
		}
		if ms >= 4000 && (ms-4000)%66 == 0 {
			k := (ms-4000)%3000 < 66
			mustDo(t, m.frame(2, ms, k, []byte{0, 1, 2, 3}))
			if k {
				videoKeys = append(videoKeys, key{2, ms})
			}
		}
		if ms >= 5000 && (ms-5000)%66 == 0 {
			k := (ms-5000)%2500 < 66
			mustDo(t, m.frame(3, ms, k, []byte{0, 1, 2, 3}))
			if k {
				videoKeys = append(videoKeys, key{3, ms})
			}
		}
	}
	mustDo(t, m.close())

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seg := bytes.Index(b, idSegment)
	size := binary.BigEndian.Uint64(b[seg+4:seg+12]) &^ (0xff << 56)
	if b[seg+4] != 0x01 || int(size) != len(b)-seg-12 {
		t.Fatalf("Segment size %d (first byte %#x), want the %d bytes after it", size, b[seg+4], len(b)-seg-12)
	}
	var l struct {
		Segment struct {
			Info webm.Info `ebml:"Info"`
			Cues webm.Cues `ebml:"Cues"`
		} `ebml:"Segment"`
	}
	if err := ebml.Unmarshal(bytes.NewReader(b), &l); err != nil {
		t.Fatal(err)
	}
	if l.Segment.Info.Duration < 11980 {
		t.Errorf("Duration %v ms", l.Segment.Info.Duration)
	}
	cued := map[key]uint64{}
	audioCues := 0
	for _, c := range l.Segment.Cues.CuePoint {
		p := c.CueTrackPositions[0]
		if p.CueTrack == 1 {
			audioCues++
			if c.CueTime > 4000 {
				t.Errorf("an audio cue at %d ms, where video plays", c.CueTime)
			}
			continue
		}
		cued[key{p.CueTrack, int64(c.CueTime)}] = p.CueClusterPosition
	}
	if audioCues < 3 {
		t.Errorf("%d audio cues in the 4 s without video", audioCues)
	}
	for _, k := range videoKeys {
		pos, ok := cued[k]
		if !ok {
			t.Errorf("no cue for the keyframe of track %d at %d ms", k.track, k.ms)
			continue
		}
		// The cluster there starts at the keyframe's time.
		// (Cluster id, 8-byte size, then the Timecode element.)
		at := seg + 12 + int(pos)
		var tc uint64
		if bytes.HasPrefix(b[at:], idCluster) && b[at+12] == 0xe7 {
			for _, x := range b[at+14 : at+14+int(b[at+13]&0x7f)] {
				tc = tc<<8 | uint64(x)
			}
		}
		// (Or, within minKeyClusterMS, at another video track's keyframe.)
		if tc > uint64(k.ms) || uint64(k.ms)-tc >= minKeyClusterMS {
			t.Errorf("cue for track %d at %d ms points at %d, not a cluster starting there (%d)", k.track, k.ms, pos, tc)
		}
	}
	if len(videoKeys) < 6 {
		t.Fatalf("test made only %d keyframes", len(videoKeys))
	}
}
