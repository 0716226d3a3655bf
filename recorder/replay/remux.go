package replay

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
)

// A browser's <video> plays only the first audio and the first video track
// of a file, so the whole consultation is served as one stream per
// participant: their own audio and video tracks copied (no transcoding)
// from the verified recording into a WebM of their own, on the recording's
// timeline (timestamp 0 is the recording's start in every stream, so the
// player keeps them in step by time alone).

// sourceFile is the part of a recording's WebM that remuxing needs.
type sourceFile struct {
	Segment struct {
		Info    webm.Info      `ebml:"Info"`
		Tracks  webm.Tracks    `ebml:"Tracks"`
		Cluster []webm.Cluster `ebml:"Cluster"`
	} `ebml:"Segment"`
}

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

// remux reads a whole recording from r (verified bytes) and returns a WebM
// holding only the tracks named label/..., with their timestamps unchanged;
// nil when no track has that label.
func remux(r io.Reader, label string) ([]byte, error) {
	var src sourceFile
	if err := ebml.Unmarshal(r, &src); err != nil {
		return nil, fmt.Errorf("replay: read recording to remux: %w", err)
	}
	var tracks []webm.TrackEntry
	outOf := map[uint64]int{} // source track number -> output index
	main := uint64(0)
	for _, t := range src.Segment.Tracks.TrackEntry {
		if labelOf(t.Name) != label {
			continue
		}
		outOf[t.TrackNumber] = len(tracks)
		t.TrackNumber = uint64(len(tracks) + 1)
		if t.TrackType == 1 && main == 0 {
			main = t.TrackNumber
		}
		tracks = append(tracks, t)
	}
	if len(tracks) == 0 {
		return nil, nil
	}
	if main == 0 {
		main = 1 // audio only: every Opus frame is a keyframe
	}
	scale := int64(src.Segment.Info.TimecodeScale)
	if scale == 0 {
		scale = 1_000_000
	}
	var frames []frame
	add := func(c *webm.Cluster, b *ebml.Block, key bool) {
		out, mine := outOf[b.TrackNumber]
		if !mine {
			return
		}
		ts := (int64(c.Timecode) + int64(b.Timecode)) * scale / 1_000_000 // ms
		for _, d := range b.Data {
			frames = append(frames, frame{out: out, ts: ts, key: key, data: d})
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
	slices.SortStableFunc(frames, func(a, b frame) int { return int(a.ts - b.ts) })

	info := src.Segment.Info
	info.TimecodeScale = 1_000_000
	info.Duration = 0 // the writer fills in this stream's own
	out := &memFile{}
	var werr error
	var errMu sync.Mutex
	setErr := func(err error) { errMu.Lock(); werr = cmp.Or(werr, err); errMu.Unlock() }
	ws, err := webm.NewSimpleBlockWriter(out, tracks,
		mkvcore.WithSegmentInfo(&info),
		mkvcore.WithSeekHead(true),
		mkvcore.WithCues(64+40*(len(frames)/25+2)),
		mkvcore.WithBlockInterceptor(nil), // frames are sorted
		mkvcore.WithMinMaxClusterDuration(main, 1000, 2000),
		mkvcore.WithOnErrorHandler(setErr),
		mkvcore.WithOnFatalHandler(setErr),
	)
	if err != nil {
		return nil, fmt.Errorf("replay: remux: %w", err)
	}
	for _, f := range frames {
		if _, err := ws[f.out].Write(f.key, f.ts, f.data); err != nil {
			setErr(err)
			break
		}
	}
	for _, w := range ws {
		w.Close() // the last Close waits for the file to be finalized
	}
	errMu.Lock()
	defer errMu.Unlock()
	if werr != nil {
		return nil, fmt.Errorf("replay: remux: %w", werr)
	}
	return out.bytes(), nil
}

// serveStream answers GET /v1/recordings/{rid}/{label}.webm: the
// participant's own audio and video, copied out of the verified recording
// (every chunk checked) into a WebM a browser plays, range-capable.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, ref refusal, label string) {
	rec, ok := h.find(w, ref)
	if !ok {
		return
	}
	body, err := h.Index.Open(r.Context(), rec)
	if err != nil {
		h.refuseUnreadable(w, ref, err)
		return
	}
	stream, err := remux(body, label)
	body.Close()
	if body.Err() != nil {
		err = body.Err()
	}
	if err == nil && stream == nil {
		err = ErrNotVisible // no such participant: like a missing recording
	}
	if err != nil {
		h.refuseUnreadable(w, ref, err)
		return
	}
	if !h.audited(w, AuditEvent{Sub: ref.Sub, Role: string(ref.Role), Action: AuditView, Recording: rec.ID, Part: ref.part, Outcome: OutcomeOK}) {
		return
	}
	w.Header().Set("Content-Type", "video/webm")
	http.ServeContent(w, r, "", rec.Ended, bytes.NewReader(stream))
}

// memFile is an in-memory file the block writer can write, rewrite (Cues,
// Duration, SeekHead) and close; its writer goroutine and the caller share
// it, hence the lock.
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.b = append(m.b, p...)
	return len(p), nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("replay: remux: rewrite at %d beyond the %d bytes written", off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Close() error { return nil }

func (m *memFile) bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b
}
