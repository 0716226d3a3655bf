package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// A browser's <video> plays only the first audio and the first video track
// of a file, so the whole consultation is served as one stream per
// participant: their own audio and video tracks copied (no transcoding)
// from the verified recording into a WebM of their own, on the recording's
// timeline (timestamp 0 is the recording's start in every stream, so the
// player keeps them in step by time alone). The only thing added is one
// silent Opus frame at 0 for someone who joined late, because browsers
// start a file's clock at its first frame.

// sourceFile is the part of a recording's WebM that remuxing needs.
type sourceFile struct {
	Segment struct {
		Info    webm.Info      `ebml:"Info"`
		Tracks  webm.Tracks    `ebml:"Tracks"`
		Cluster []webm.Cluster `ebml:"Cluster"`
	} `ebml:"Segment"`
}

// opusSilence is one 20 ms Opus frame of silence (TOC 0xf8: CELT, 48 kHz,
// mono, one frame; an empty CELT frame), as WebRTC stacks send for silence.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// frame is one block of one output track, at an absolute time.
type frame struct {
	out  int // index into the output tracks
	ts   int64
	key  bool
	data []byte
}

// Label is how a participant is named to viewers: their role, numbered
// from the second participant of the same role on (patient, clinician,
// guest, guest-2), as the recorder names tracks ("guest-2/video").
func labelOf(trackName string) string {
	label, _, _ := strings.Cut(trackName, "/")
	return label
}

// part is what one segment gives a participant's stream.
type part struct {
	info   webm.Info
	tracks []webm.TrackEntry
	frames []frame // out indexes tracks
}

// readPart reads a whole recording from r (verified bytes) and returns its
// tracks named label/... and their frames, timestamps unchanged (ms on the
// recording's timeline); no tracks when none has that label.
func readPart(r io.Reader, label string) (part, error) {
	var src sourceFile
	if err := ebml.Unmarshal(r, &src); err != nil {
		return part{}, fmt.Errorf("replay: read recording to remux: %w", err)
	}
	p := part{info: src.Segment.Info}
	outOf := map[uint64]int{} // source track number -> output index
	for _, t := range src.Segment.Tracks.TrackEntry {
		if labelOf(t.Name) != label {
			continue
		}
		outOf[t.TrackNumber] = len(p.tracks)
		p.tracks = append(p.tracks, t)
	}
	scale := int64(src.Segment.Info.TimecodeScale)
	if scale == 0 {
		scale = 1_000_000
	}
	add := func(c *webm.Cluster, b *ebml.Block, key bool) {
		out, mine := outOf[b.TrackNumber]
		if !mine {
			return
		}
		ts := (int64(c.Timecode) + int64(b.Timecode)) * scale / 1_000_000 // ms
		for _, d := range b.Data {
			p.frames = append(p.frames, frame{out: out, ts: ts, key: key, data: d})
		}
	}
	for i := range src.Segment.Cluster {
		c := &src.Segment.Cluster[i]
		for j := range c.SimpleBlock {
			add(c, &c.SimpleBlock[j], c.SimpleBlock[j].Keyframe)
		}
		for j := range c.BlockGroup {
			// A Block in a group is a keyframe when it references nothing.
			add(c, &c.BlockGroup[j].Block, c.BlockGroup[j].ReferenceBlock == 0)
		}
	}
	return p, nil
}

// joinParts puts one participant's parts, one per segment, on one clock:
// part i's frames moved later by offsets[i] ms, tracks of the same name and
// codec merged and named label/kind. It returns the WebM of it, or nil when
// no part has a track.
func joinParts(parts []part, offsets []int64, label string) ([]byte, error) {
	var tracks []webm.TrackEntry
	var frames []frame
	main := uint64(0)
	end := map[int]int64{} // output track -> its last frame's time in the parts so far
	for i, p := range parts {
		outOf := make([]int, len(p.tracks))
		for j, t := range p.tracks {
			_, kind, _ := strings.Cut(t.Name, "/")
			t.Name = label + "/" + kind
			k := slices.IndexFunc(tracks, func(u webm.TrackEntry) bool { return u.Name == t.Name && u.CodecID == t.CodecID })
			if k < 0 {
				k = len(tracks)
				t.TrackNumber, t.TrackUID = uint64(k+1), uint64(k+1)
				tracks = append(tracks, t)
			}
			outOf[j] = k
			if t.TrackType == 1 && main == 0 {
				main = uint64(k + 1)
			}
		}
		last := maps.Clone(end)
		for _, f := range p.frames {
			f.out, f.ts = outOf[f.out], f.ts+offsets[i]
			if prev, ok := last[f.out]; ok && f.ts <= prev {
				f.ts = end[f.out] + 1 // timestamps of a track only go forward, across segments too
			}
			end[f.out] = max(end[f.out], f.ts)
			frames = append(frames, f)
		}
	}
	if len(tracks) == 0 {
		return nil, nil
	}
	if main == 0 {
		main = 1 // audio only: every Opus frame is a keyframe
	}
	slices.SortStableFunc(frames, func(a, b frame) int { return int(a.ts - b.ts) })
	// A stream must start at the recording's time 0 to share its clock: a
	// browser plays a file from its first timestamp as its time 0. For someone
	// who joined late, one silent Opus frame at 0 says "nothing yet".
	if len(frames) > 0 && frames[0].ts > 0 {
		for i, t := range tracks {
			if t.CodecID == "A_OPUS" {
				frames = append([]frame{{out: i, ts: 0, key: true, data: opusSilence}}, frames...)
				break
			}
		}
	}
	return marshalStream(parts[0].info, tracks, frames, main)
}

// outFile is the WebM remux writes.
type outFile struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment struct {
		Info    webm.Info      `ebml:"Info"`
		Tracks  webm.Tracks    `ebml:"Tracks"`
		Cluster []webm.Cluster `ebml:"Cluster"`
	} `ebml:"Segment"`
}

// marshalStream writes frames (sorted, ms on the recording's timeline) as a
// WebM whose timestamps are those times unchanged, so a participant who
// joined late starts late in their stream too and every stream shares the
// recording's clock. (ebml-go's block writer rebases the first frame to 0,
// so the Segment is built here.) A cluster starts at a keyframe of the main
// track once a second has passed, and at least every two seconds.
func marshalStream(info webm.Info, tracks []webm.TrackEntry, frames []frame, main uint64) ([]byte, error) {
	var out outFile
	out.Header = *webm.DefaultEBMLHeader
	out.Segment.Info = webm.Info{TimecodeScale: 1_000_000, MuxingApp: "medcall", WritingApp: "medcall", DateUTC: info.DateUTC}
	out.Segment.Tracks.TrackEntry = tracks
	var c *webm.Cluster
	for _, f := range frames {
		start := max(f.ts, 0) // a cluster's timecode is unsigned; Opus pre-roll may be a few ms before 0
		if c == nil || f.ts-int64(c.Timecode) >= 2000 ||
			(uint64(f.out+1) == main && f.key && f.ts-int64(c.Timecode) >= 1000) {
			out.Segment.Cluster = append(out.Segment.Cluster, webm.Cluster{Timecode: uint64(start)})
			c = &out.Segment.Cluster[len(out.Segment.Cluster)-1]
		}
		c.SimpleBlock = append(c.SimpleBlock, ebml.Block{
			TrackNumber: uint64(f.out + 1), Timecode: int16(f.ts - int64(c.Timecode)), Keyframe: f.key, Data: [][]byte{f.data},
		})
	}
	if n := len(frames); n > 0 {
		out.Segment.Info.Duration = float64(frames[n-1].ts + 20) // the last frame lasts one Opus frame or so
	}
	var buf bytes.Buffer
	if err := ebml.Marshal(&out, &buf); err != nil {
		return nil, fmt.Errorf("replay: remux: %w", err)
	}
	return buf.Bytes(), nil
}

// serveStream answers GET /v1/recordings/{rid}/{label}.webm: the
// participant's own audio and video, copied out of every verified segment
// of the consultation (every chunk checked) into one WebM a browser plays,
// the segments back to back, range-capable.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, ref refusal, label string) {
	c, ok := h.findConsultation(w, ref)
	if !ok {
		return
	}
	stream, err := h.Index.stream(r.Context(), c, label)
	if err == nil && stream == nil {
		err = ErrNotVisible // no such participant: like a missing recording
	}
	if err != nil {
		h.refuseUnreadable(w, ref, err)
		return
	}
	if !h.auditedViews(w, ref, c) {
		return
	}
	w.Header().Set("Content-Type", "video/webm")
	http.ServeContent(w, r, "", c.Segments[len(c.Segments)-1].Ended, bytes.NewReader(stream))
}

// stream builds the WebM of the participant c's timeline labels label:
// their tracks from each segment they are in (named there by that
// segment's own labels), each moved to the segment's offset.
func (x *Index) stream(ctx context.Context, c Consultation, label string) ([]byte, error) {
	segs := make([]*Recording, len(c.Segments))
	for i, s := range c.Segments {
		segs[i] = s.Recording
	}
	id := ""
	for pid, l := range labels(segs...) {
		if l == label {
			id = pid
		}
	}
	if id == "" {
		return nil, nil
	}
	var parts []part
	var offsets []int64
	for _, s := range c.Segments {
		own, ok := labels(s.Recording)[id]
		if !ok {
			continue // not in this segment
		}
		body, err := x.Open(ctx, s.Recording)
		if err != nil {
			return nil, err
		}
		p, err := readPart(body, own)
		body.Close()
		if body.Err() != nil {
			err = body.Err()
		}
		if err != nil {
			return nil, err
		}
		parts, offsets = append(parts, p), append(offsets, s.OffsetMS)
	}
	if len(parts) == 0 {
		return nil, nil
	}
	return joinParts(parts, offsets, label)
}
