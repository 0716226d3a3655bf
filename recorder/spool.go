package recorder

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"
)

// The spool is an append-only file of framed records:
//
//	file   = magic record*
//	record = length:u32 crc:u32 type:u8 body
//
// length counts type and body; crc is CRC-32C over type and body. A record
// that is short or fails its CRC marks the torn tail of a crashed writer:
// reading stops there and everything before it is used.
//
// The first record is the header (binding and recording id); track
// declarations appear before the first frame of their track; frames are
//
//	track:u16 timestamp_ms:i64 flags:u8 data
//
// with timestamp_ms relative to the header's Started time.
const spoolMagic = "MEDCALL-SPOOL\x00\x00\x01"

// Record types.
const (
	recHeader byte = 1
	recTrack  byte = 2
	recEvent  byte = 3
	recFrame  byte = 4
	recEnd    byte = 5
)

const (
	recordHead     = 9  // length, crc, type
	frameHead      = 11 // track, timestamp, flags
	maxRecordBytes = 64 << 20
	flagKeyframe   = 0x01
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrSpoolCorrupt means a spool does not start with a valid header.
var ErrSpoolCorrupt = errors.New("spool is not a medcall spool or has no header")

// spoolHeader is the first record of a spool.
type spoolHeader struct {
	Recording    string    `json:"recording"`
	Consultation string    `json:"consultation"`
	Patient      string    `json:"patient"`
	Started      time.Time `json:"started"`
	Previous     string    `json:"previous,omitempty"` // the segment this one continues
}

// spoolTrack declares a track before its first frame.
type spoolTrack struct {
	ID          uint16 `json:"id"`
	Participant string `json:"participant"`
	Role        string `json:"role"`
	Kind        string `json:"kind"`
	Codec       string `json:"codec"`
	ClockRate   uint32 `json:"clock_rate"`
	Channels    uint16 `json:"channels,omitempty"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
}

// spoolEvent is a consultation event.
type spoolEvent struct {
	Time        time.Time `json:"time"`
	Type        string    `json:"type"`
	Participant string    `json:"participant,omitempty"`
	Role        string    `json:"role,omitempty"`
	Path        string    `json:"path,omitempty"`
}

// spoolEnd closes a spool that was ended cleanly.
type spoolEnd struct {
	Ended time.Time `json:"ended"`
}

// spoolFile is what the spool writes to; *os.File in production.
type spoolFile interface {
	io.Writer
	Sync() error
	Close() error
}

// spoolWriter appends records. It is safe for concurrent use; the first
// error sticks and every later call returns it.
type spoolWriter struct {
	mu      sync.Mutex // guards everything below
	f       spoolFile
	bw      *bufio.Writer
	err     error
	scratch [recordHead + frameHead]byte
	closed  bool
}

// spoolBuffer is a spool writer's buffer. A consultation's media (two
// participants' Opus and video, ~45 KB/s at the bench's rates) fills it a
// few times a second between the syncs, so a write reaches the file every
// few hundred milliseconds; 64 KiB per recording cost more memory than it
// saved syscalls.
const spoolBuffer = 16 << 10

func newSpoolWriter(f spoolFile) (*spoolWriter, error) {
	w := &spoolWriter{f: f, bw: bufio.NewWriterSize(f, spoolBuffer)}
	if _, err := w.bw.WriteString(spoolMagic); err != nil {
		return nil, err
	}
	return w, nil
}

// writeJSON appends a record whose body is v as JSON.
func (w *spoolWriter) writeJSON(typ byte, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(typ, nil, body)
}

// writeFrame appends a frame record.
func (w *spoolWriter) writeFrame(track uint16, tsMS int64, key bool, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.scratch[recordHead:]
	binary.BigEndian.PutUint16(h[0:], track)
	binary.BigEndian.PutUint64(h[2:], uint64(tsMS))
	h[10] = 0
	if key {
		h[10] = flagKeyframe
	}
	return w.writeLocked(recFrame, h, data)
}

// writeLocked appends one record made of prefix and body. Called locked.
func (w *spoolWriter) writeLocked(typ byte, prefix, body []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return os.ErrClosed
	}
	n := 1 + len(prefix) + len(body)
	h := w.scratch[:recordHead]
	h[8] = typ
	crc := crc32.Update(0, crcTable, h[8:9])
	crc = crc32.Update(crc, crcTable, prefix)
	crc = crc32.Update(crc, crcTable, body)
	binary.BigEndian.PutUint32(h[0:], uint32(n))
	binary.BigEndian.PutUint32(h[4:], crc)
	if _, err := w.bw.Write(h); err != nil {
		w.err = err
		return err
	}
	if _, err := w.bw.Write(prefix); err != nil {
		w.err = err
		return err
	}
	if _, err := w.bw.Write(body); err != nil {
		w.err = err
		return err
	}
	return nil
}

// sync writes buffered records to the file and makes them durable.
func (w *spoolWriter) sync() error {
	w.mu.Lock()
	if w.err == nil && !w.closed {
		w.err = w.bw.Flush()
	}
	err, closed := w.err, w.closed
	w.mu.Unlock()
	if err != nil || closed {
		return err
	}
	// fsync outside the lock: track goroutines keep appending to the buffer.
	if err := w.f.Sync(); err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
		return err
	}
	return nil
}

// close flushes, syncs and closes the file.
func (w *spoolWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	if w.err == nil {
		w.err = w.f.Sync()
	}
	if cerr := w.f.Close(); w.err == nil {
		w.err = cerr
	}
	return w.err
}

// frameRef locates one frame's data in a spool file.
type frameRef struct {
	off   int64
	size  int32
	track uint16
	key   bool
	tsMS  int64
}

// spoolContents is everything read back from a spool.
type spoolContents struct {
	header    spoolHeader
	tracks    []spoolTrack
	events    []spoolEvent
	frames    []frameRef
	end       *spoolEnd
	validSize int64 // bytes up to the end of the last good record
	torn      bool  // the file had bytes after the last good record
}

// readSpool reads a spool, stopping at a torn tail.
func readSpool(path string) (*spoolContents, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 256<<10)
	magic := make([]byte, len(spoolMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != spoolMagic {
		return nil, fmt.Errorf("%s: %w", path, ErrSpoolCorrupt)
	}
	sc := &spoolContents{validSize: int64(len(spoolMagic))}
	var head [recordHead]byte
	var body []byte
	off := sc.validSize
	haveHeader := false
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			break
		}
		n := int64(binary.BigEndian.Uint32(head[0:]))
		if n < 1 || n > maxRecordBytes || off+recordHead-1+n > st.Size() {
			break
		}
		if int64(cap(body)) < n-1 {
			body = make([]byte, n-1)
		}
		body = body[:n-1]
		if _, err := io.ReadFull(r, body); err != nil {
			break
		}
		crc := crc32.Update(0, crcTable, head[8:9])
		if crc32.Update(crc, crcTable, body) != binary.BigEndian.Uint32(head[4:]) {
			break
		}
		if err := sc.add(head[8], body, off+recordHead); err != nil {
			break
		}
		if head[8] == recHeader {
			haveHeader = true
		}
		off += recordHead - 1 + n
		sc.validSize = off
	}
	sc.torn = sc.validSize < st.Size()
	if !haveHeader {
		return nil, fmt.Errorf("%s: %w", path, ErrSpoolCorrupt)
	}
	return sc, nil
}

// add decodes one record whose body starts at file offset bodyOff.
func (sc *spoolContents) add(typ byte, body []byte, bodyOff int64) error {
	switch typ {
	case recHeader:
		return json.Unmarshal(body, &sc.header)
	case recTrack:
		var t spoolTrack
		if err := json.Unmarshal(body, &t); err != nil {
			return err
		}
		sc.tracks = append(sc.tracks, t)
	case recEvent:
		var e spoolEvent
		if err := json.Unmarshal(body, &e); err != nil {
			return err
		}
		sc.events = append(sc.events, e)
	case recFrame:
		if len(body) < frameHead {
			return errors.New("short frame record")
		}
		sc.frames = append(sc.frames, frameRef{
			off:   bodyOff + frameHead,
			size:  int32(len(body) - frameHead),
			track: binary.BigEndian.Uint16(body[0:]),
			tsMS:  int64(binary.BigEndian.Uint64(body[2:])),
			key:   body[10]&flagKeyframe != 0,
		})
	case recEnd:
		var e spoolEnd
		if err := json.Unmarshal(body, &e); err != nil {
			return err
		}
		sc.end = &e
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return nil
}
