package recorder

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
)

// Opus in Matroska (RFC 7845 §5 and the Matroska codec mapping): WebRTC
// encoders are libopus, whose look-ahead is 312 samples at 48 kHz; seeking
// needs 80 ms of pre-roll to converge.
const (
	opusPreSkip     = 312
	opusCodecDelay  = 6_500_000  // ns, opusPreSkip at 48 kHz
	opusSeekPreRoll = 80_000_000 // ns
)

// Cluster layout: a new cluster at each keyframe of the main (video) track
// once minCluster has passed, and at least every maxCluster. Every cluster
// gets a cue point.
const (
	minClusterMS = 1000
	maxClusterMS = 2000
)

// opusHead builds the OpusHead identification header (RFC 7845 §5.1) used as CodecPrivate.
func opusHead(channels uint16) []byte {
	if channels == 0 {
		channels = 2
	}
	b := make([]byte, 19)
	copy(b, "OpusHead")
	b[8] = 1 // version
	b[9] = byte(channels)
	binary.LittleEndian.PutUint16(b[10:], opusPreSkip)
	binary.LittleEndian.PutUint32(b[12:], 48000)
	// output gain 0, channel mapping family 0 (mono or stereo)
	return b
}

// trackName names tracks role/kind, numbering second and later participants
// of the same role: patient/audio, guest/video, guest-2/audio.
type trackNamer struct {
	byParticipant map[string]string
	perRole       map[string]int
}

func (n *trackNamer) name(participant, role, kind string) string {
	if n.byParticipant == nil {
		n.byParticipant, n.perRole = map[string]string{}, map[string]int{}
	}
	label, ok := n.byParticipant[participant]
	if !ok {
		if role == "" {
			role = "participant"
		}
		n.perRole[role]++
		label = role
		if c := n.perRole[role]; c > 1 {
			label = fmt.Sprintf("%s-%d", role, c)
		}
		n.byParticipant[participant] = label
	}
	return label + "/" + kind
}

// stickyFile makes write errors non-fatal to ebml-go: the first error is kept
// and later writes are swallowed, so its writer goroutine never stops halfway
// (which would leave our writes blocked). The error is checked at the end.
type stickyFile struct {
	mu  sync.Mutex
	f   *os.File
	err error
}

func (s *stickyFile) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *stickyFile) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *stickyFile) Write(p []byte) (int, error) {
	if s.Err() != nil {
		return len(p), nil
	}
	if _, err := s.f.Write(p); err != nil {
		s.setErr(err)
	}
	return len(p), nil
}

func (s *stickyFile) WriteAt(p []byte, off int64) (int, error) {
	if s.Err() != nil {
		return len(p), nil
	}
	if _, err := s.f.WriteAt(p, off); err != nil {
		s.setErr(err)
	}
	return len(p), nil
}

func (s *stickyFile) Close() error {
	if s.Err() == nil {
		if err := s.f.Sync(); err != nil {
			s.setErr(err)
		}
	}
	if err := s.f.Close(); err != nil {
		s.setErr(err)
	}
	return s.Err()
}

// ErrNoMedia means a spool holds no frames, so there is no file to write.
var ErrNoMedia = errors.New("recording has no media")

// writeWebM writes the frames of sc (read from the spool at spoolPath) to a
// seekable WebM at outPath. Tracks are numbered in order of first appearance
// and all are in the header; frames are written in timestamp order, shifted
// so the earliest frame is at 0. It returns the track summaries and the
// shift in milliseconds.
func writeWebM(ctx context.Context, sc *spoolContents, spoolPath, outPath string) ([]TrackSummary, int64, error) {
	if len(sc.frames) == 0 {
		return nil, 0, ErrNoMedia
	}
	tracks := slices.Clone(sc.tracks)
	slices.SortStableFunc(tracks, func(a, b spoolTrack) int { return int(a.ID) - int(b.ID) })
	frames := slices.Clone(sc.frames)
	// Stable: frames of one track keep their spool order.
	slices.SortStableFunc(frames, func(a, b frameRef) int {
		switch {
		case a.tsMS < b.tsMS:
			return -1
		case a.tsMS > b.tsMS:
			return 1
		}
		return 0
	})
	// ebml-go puts the first block at 0 whatever its timestamp; say so.
	// (Players subtract an Opus track's CodecDelay, so ffprobe shows it
	// starting at -0.007 s: the codec's look-ahead, not a shift.)
	base := frames[0].tsMS

	// Number the tracks that have frames, in declaration order.
	used := map[uint16]bool{}
	keyframes := map[uint16]int{}
	for _, f := range frames {
		used[f.track] = true
		if f.key {
			keyframes[f.track]++
		}
	}
	var (
		entries  []webm.TrackEntry
		sums     []TrackSummary
		index    = map[uint16]int{} // spool track id -> entries index
		namer    trackNamer
		mainNum  uint64
		mainKeys int
	)
	for _, t := range tracks {
		if !used[t.ID] {
			continue
		}
		if _, dup := index[t.ID]; dup {
			continue
		}
		num := uint64(len(entries) + 1)
		e := webm.TrackEntry{
			Name:        namer.name(t.Participant, t.Role, t.Kind),
			TrackNumber: num,
			TrackUID:    trackUID(sc.header.Recording, num),
		}
		switch t.Codec {
		case codecOpus.String():
			e.CodecID, e.TrackType = "A_OPUS", 2
			e.CodecPrivate = opusHead(t.Channels)
			e.CodecDelay, e.SeekPreRoll = opusCodecDelay, opusSeekPreRoll
			ch := uint64(t.Channels)
			if ch == 0 {
				ch = 2
			}
			e.Audio = &webm.Audio{SamplingFrequency: 48000, Channels: ch}
		case codecVP8.String(), codecVP9.String():
			e.CodecID, e.TrackType = "V_VP8", 1
			if t.Codec == codecVP9.String() {
				e.CodecID = "V_VP9"
			}
			e.Video = &webm.Video{PixelWidth: uint64(t.Width), PixelHeight: uint64(t.Height)}
			if mainNum == 0 {
				mainNum, mainKeys = num, keyframes[t.ID]
			}
		default:
			return nil, 0, fmt.Errorf("track %d: codec %q cannot go in WebM", t.ID, t.Codec)
		}
		index[t.ID] = len(entries)
		entries = append(entries, e)
		sums = append(sums, TrackSummary{
			Number: int(num), Name: e.Name, Participant: t.Participant, Role: t.Role,
			Kind: t.Kind, Codec: t.Codec, FirstMS: -1,
		})
	}
	durMS := frames[len(frames)-1].tsMS - base
	clusters := int(durMS/minClusterMS) + 2
	if mainNum == 0 {
		mainNum = 1 // audio only: every Opus frame is a keyframe
	} else {
		clusters = mainKeys + int(durMS/maxClusterMS) + 2
	}
	// A cue point is under 40 bytes; ebml-go thins the cues if this is short.
	cuesReserve := 64 + 40*clusters

	f, err := os.Create(outPath)
	if err != nil {
		return nil, 0, err
	}
	out := &stickyFile{f: f}
	ws, err := webm.NewSimpleBlockWriter(out, entries,
		mkvcore.WithSegmentInfo(&webm.Info{
			TimecodeScale: 1_000_000, // 1 ms
			MuxingApp:     "medcall",
			WritingApp:    "medcall",
			DateUTC:       sc.header.Started.Add(msDuration(base)),
		}),
		mkvcore.WithSeekHead(true),
		mkvcore.WithCues(cuesReserve),
		mkvcore.WithBlockInterceptor(nil), // frames arrive sorted; the default sorter may drop
		mkvcore.WithMinMaxClusterDuration(mainNum, minClusterMS, maxClusterMS),
		mkvcore.WithOnErrorHandler(out.setErr),
		mkvcore.WithOnFatalHandler(out.setErr),
	)
	if err != nil {
		f.Close()
		os.Remove(outPath)
		return nil, 0, fmt.Errorf("webm header: %w", err)
	}

	src, err := os.Open(spoolPath)
	if err != nil {
		for _, w := range ws {
			w.Close()
		}
		os.Remove(outPath)
		return nil, 0, err
	}
	defer src.Close()
	// ebml-go's writer goroutine uses a frame's bytes after Write returns,
	// until it takes the next frame: alternate two buffers.
	var bufs [2][]byte
	var werr error
	for i, fr := range frames {
		if i%256 == 0 {
			if werr = ctx.Err(); werr != nil {
				break
			}
		}
		b := bufs[i%2]
		if cap(b) < int(fr.size) {
			b = make([]byte, fr.size)
		}
		b = b[:fr.size]
		bufs[i%2] = b
		if _, werr = src.ReadAt(b, fr.off); werr != nil {
			if errors.Is(werr, io.EOF) {
				werr = io.ErrUnexpectedEOF
			}
			werr = fmt.Errorf("spool read: %w", werr)
			break
		}
		idx := index[fr.track]
		ts := fr.tsMS - base
		if _, werr = ws[idx].Write(fr.key, ts, b); werr != nil {
			break
		}
		s := &sums[idx]
		if s.FirstMS < 0 {
			s.FirstMS = ts
		}
		s.LastMS = ts
		s.Frames++
	}
	for _, w := range ws {
		w.Close() // the last Close waits for the file to be finalized and closed
	}
	if werr == nil {
		werr = out.Err()
	}
	if werr != nil {
		os.Remove(outPath)
		return nil, 0, fmt.Errorf("webm write: %w", werr)
	}
	return sums, base, nil
}

func trackUID(recording string, num uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(recording))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], num)
	h.Write(b[:])
	if u := h.Sum64(); u != 0 {
		return u
	}
	return num
}
