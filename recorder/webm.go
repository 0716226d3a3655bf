package recorder

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"slices"

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

// Cluster layout (see mkvWriter): a new cluster at each video keyframe,
// and at least every maxCluster; where there is no video, every minCluster.
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
	src, err := os.Open(spoolPath)
	if err != nil {
		return nil, 0, err
	}
	defer src.Close()
	tracks := slices.Clone(sc.tracks)
	slices.SortStableFunc(tracks, func(a, b spoolTrack) int { return int(a.ID) - int(b.ID) })
	frames := slices.Clone(sc.frames)
	rates := videoTiming(frames, tracks)
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
	// The first frame is at 0 in the file; the manifest says by how much
	// everything moved. (Players subtract an Opus track's CodecDelay, so
	// ffprobe shows it starting at -0.007 s: the codec's look-ahead, not a shift.)
	base := frames[0].tsMS

	// Number the tracks that have frames, in declaration order.
	used := map[uint16]bool{}
	for _, f := range frames {
		used[f.track] = true
	}
	var (
		entries []webm.TrackEntry
		sums    []TrackSummary
		index   = map[uint16]int{} // spool track id -> entries index
		namer   trackNamer
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
			ch := opusChannels(src, frames, t.ID)
			e.CodecID, e.TrackType = "A_OPUS", 2
			e.CodecPrivate = opusHead(uint16(ch))
			e.CodecDelay, e.SeekPreRoll = opusCodecDelay, opusSeekPreRoll
			e.Audio = &webm.Audio{SamplingFrequency: 48000, Channels: uint64(ch)}
		case codecVP8.String(), codecVP9.String():
			e.CodecID, e.TrackType = "V_VP8", 1
			if t.Codec == codecVP9.String() {
				e.CodecID = "V_VP9"
			}
			e.Video = &webm.Video{PixelWidth: uint64(t.Width), PixelHeight: uint64(t.Height)}
			if r := rates[t.ID]; r > 0 {
				e.DefaultDuration = uint64(math.Round(1e9 / r)) // whole ms: see videoTiming
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

	f, err := os.Create(outPath)
	if err != nil {
		return nil, 0, err
	}
	mw, err := newMKVWriter(f, webm.Info{
		TimecodeScale: 1_000_000, // 1 ms
		MuxingApp:     "medcall",
		WritingApp:    "medcall",
		DateUTC:       sc.header.Started.Add(msDuration(base)),
	}, entries)
	var buf []byte
	for i, fr := range frames {
		if err != nil {
			break
		}
		if i%256 == 0 {
			if err = ctx.Err(); err != nil {
				break
			}
		}
		if cap(buf) < int(fr.size) {
			buf = make([]byte, fr.size)
		}
		buf = buf[:fr.size]
		if _, err = src.ReadAt(buf, fr.off); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			err = fmt.Errorf("spool read: %w", err)
			break
		}
		idx := index[fr.track]
		ts := fr.tsMS - base
		if err = mw.frame(uint64(idx+1), ts, fr.key, buf); err != nil {
			break
		}
		s := &sums[idx]
		if s.FirstMS < 0 {
			s.FirstMS = ts
		}
		s.LastMS = ts
		s.Frames++
	}
	if mw != nil {
		if cerr := mw.close(); err == nil {
			err = cerr
		}
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(outPath)
		return nil, 0, fmt.Errorf("webm write: %w", err)
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
