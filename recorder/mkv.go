package recorder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// Matroska element ids written by hand (the rest go through ebml.Marshal).
var (
	idSegment = []byte{0x18, 0x53, 0x80, 0x67}
	idCluster = []byte{0x1f, 0x43, 0xb6, 0x75}
	idInfo    = []byte{0x15, 0x49, 0xa9, 0x66}
	idTracks  = []byte{0x16, 0x54, 0xae, 0x6b}
	idCues    = []byte{0x1c, 0x53, 0xbb, 0x6b}
)

const (
	// headReserve is the room kept at the start of the Segment for the
	// SeekHead and the Info (whose Duration is known only at the end).
	headReserve = 512
	// minKeyClusterMS keeps two video tracks' keyframes a few ms apart from
	// making a cluster each: the second is cued in the first one's cluster.
	minKeyClusterMS = 100
)

// mkvWriter writes one WebM file from frames in timestamp order. Unlike a
// live muxer it knows the whole recording, so the file has what players
// and tools need: the Segment's size, a Duration, a cluster starting at
// every video keyframe of every video track with a cue point on it (and,
// where no video is playing, a cue on the audio at each cluster), every
// element with a known size.
type mkvWriter struct {
	f        *os.File
	w        *bufio.Writer
	pos      int64 // bytes written so far
	segStart int64 // file offset of the Segment's data
	info     webm.Info
	tracksAt int64

	video       map[uint64]bool
	audioCue    uint64 // the audio track cued where there is no video; 0 for none
	cluster     bytes.Buffer
	clusterMS   int64
	clusterAt   int64 // segment-relative position of the open cluster
	inCluster   bool
	keyCluster  bool // the open cluster was started by a video keyframe
	lastVideoMS int64
	sawVideo    bool
	cues        []webm.CuePoint
	lastMS      int64
}

// newMKVWriter writes the EBML header, the start of the Segment and the
// Tracks to f.
func newMKVWriter(f *os.File, info webm.Info, tracks []webm.TrackEntry) (*mkvWriter, error) {
	m := &mkvWriter{f: f, w: bufio.NewWriterSize(f, 256<<10), info: info, video: map[uint64]bool{}}
	for _, t := range tracks {
		switch {
		case t.TrackType == 1:
			m.video[t.TrackNumber] = true
		case m.audioCue == 0:
			m.audioCue = t.TrackNumber
		}
	}
	if err := m.marshal(&struct {
		H webm.EBMLHeader `ebml:"EBML"`
	}{*webm.DefaultEBMLHeader}); err != nil {
		return nil, err
	}
	// Segment id and an 8-byte size, filled in by close.
	m.write(idSegment)
	m.write(make([]byte, 8))
	m.segStart = m.pos
	m.write(voidElement(headReserve))
	m.tracksAt = m.pos - m.segStart
	if err := m.marshal(&struct {
		T webm.Tracks `ebml:"Tracks"`
	}{webm.Tracks{TrackEntry: tracks}}); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mkvWriter) write(b []byte) {
	n, _ := m.w.Write(b) // bufio keeps the first error; flush reports it
	m.pos += int64(n)
}

func (m *mkvWriter) marshal(v any) error {
	var b bytes.Buffer
	if err := ebml.Marshal(v, &b); err != nil {
		return err
	}
	m.write(b.Bytes())
	return nil
}

// frame adds one frame of track at ms (non-decreasing across calls).
func (m *mkvWriter) frame(track uint64, ms int64, key bool, data []byte) error {
	video := m.video[track]
	videoKey := video && key
	if !m.inCluster || ms-m.clusterMS >= maxClusterMS ||
		(videoKey && (!m.keyCluster || ms-m.clusterMS >= minKeyClusterMS)) ||
		(!m.sawVideo && ms-m.clusterMS >= minClusterMS) {
		if err := m.flushCluster(); err != nil {
			return err
		}
		m.inCluster, m.clusterMS, m.clusterAt, m.keyCluster = true, ms, m.pos-m.segStart, videoKey
		if err := ebml.Marshal(&struct {
			T uint64 `ebml:"Timecode"`
		}{uint64(ms)}, &m.cluster); err != nil {
			return err
		}
		// Where no video plays, the audio is what a seek lands on.
		if m.audioCue != 0 && (!m.sawVideo || ms-m.lastVideoMS > maxClusterMS) && !videoKey {
			m.cue(m.audioCue, ms)
		}
	}
	if videoKey {
		m.cue(track, ms)
	}
	if video {
		m.sawVideo, m.lastVideoMS = true, ms
	}
	m.lastMS = ms
	return ebml.Marshal(&struct {
		B ebml.Block `ebml:"SimpleBlock"`
	}{ebml.Block{TrackNumber: track, Timecode: int16(ms - m.clusterMS), Keyframe: key, Data: [][]byte{data}}}, &m.cluster)
}

func (m *mkvWriter) cue(track uint64, ms int64) {
	m.cues = append(m.cues, webm.CuePoint{CueTime: uint64(ms), CueTrackPositions: []webm.CueTrackPosition{{
		CueTrack: track, CueClusterPosition: uint64(m.clusterAt),
	}}})
}

// flushCluster writes the open cluster with its size.
func (m *mkvWriter) flushCluster() error {
	if !m.inCluster {
		return nil
	}
	m.write(idCluster)
	m.write(vint8(uint64(m.cluster.Len())))
	m.write(m.cluster.Bytes())
	m.cluster.Reset()
	m.inCluster = false
	return nil
}

// close writes the last cluster and the Cues, then fills in the Segment
// size, the SeekHead and the Info (with the Duration), and closes the file.
func (m *mkvWriter) close() error {
	err := m.flushCluster()
	cuesAt := m.pos - m.segStart
	if err == nil && len(m.cues) > 0 {
		err = m.marshal(&struct {
			C webm.Cues `ebml:"Cues"`
		}{webm.Cues{CuePoint: m.cues}})
	}
	if err == nil {
		err = m.w.Flush()
	}
	if err == nil {
		_, err = m.f.WriteAt(vint8(uint64(m.pos-m.segStart)), m.segStart-8)
	}
	if err == nil {
		err = m.writeHead(cuesAt)
	}
	if err == nil {
		err = m.f.Sync()
	}
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeHead fills the reserved room with the SeekHead, the Info and a Void.
func (m *mkvWriter) writeHead(cuesAt int64) error {
	m.info.Duration = float64(m.lastMS) + 1
	seeks := []webm.Seek{
		{SeekID: idInfo, SeekPosition: 0}, // fixed below
		{SeekID: idTracks, SeekPosition: uint64(m.tracksAt)},
	}
	if len(m.cues) > 0 {
		seeks = append(seeks, webm.Seek{SeekID: idCues, SeekPosition: uint64(cuesAt)})
	}
	for pad := 0; pad < 2; pad++ {
		var info bytes.Buffer
		i := m.info
		if pad == 1 {
			// A Void cannot be 1 byte long: grow the Info by one instead.
			i.WritingApp += " "
		}
		if err := ebml.Marshal(&struct {
			I webm.Info `ebml:"Info"`
		}{i}, &info); err != nil {
			return err
		}
		var head bytes.Buffer
		for {
			head.Reset()
			if err := ebml.Marshal(&struct {
				S webm.SeekHead `ebml:"SeekHead"`
			}{webm.SeekHead{Seek: seeks}}, &head); err != nil {
				return err
			}
			if seeks[0].SeekPosition == uint64(head.Len()) {
				break
			}
			seeks[0].SeekPosition = uint64(head.Len()) // the Info follows the SeekHead
		}
		head.Write(info.Bytes())
		rest := headReserve - head.Len()
		if rest < 0 {
			return fmt.Errorf("webm head is %d bytes, more than the %d reserved", head.Len(), headReserve)
		}
		if rest == 1 {
			continue
		}
		if rest > 0 {
			head.Write(voidElement(rest))
		}
		_, err := m.f.WriteAt(head.Bytes(), m.segStart)
		return err
	}
	return io.ErrShortWrite
}

// vint8 encodes v as an 8-byte EBML variable-size integer.
func vint8(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	b[0] = 0x01
	return b[:]
}

// voidElement is an EBML Void element of exactly n (≥ 2) bytes.
func voidElement(n int) []byte {
	b := make([]byte, n)
	b[0] = 0xec
	if n-2 < 0x7f {
		b[1] = 0x80 | byte(n-2)
		return b
	}
	copy(b[1:9], vint8(uint64(n-9)))
	return b
}
