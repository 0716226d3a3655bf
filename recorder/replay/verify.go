package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/sfu/ident"
)

// ErrTampered means the stored bytes are not the ones the manifest signed.
// The recording has been hidden and the alert raised.
var ErrTampered = errors.New("replay: recording bytes differ from what its manifest signed")

// chunkDigests are a manifest's signed chunk digests, decoded.
type chunkDigests struct {
	size int64
	sums [][32]byte
}

// newRecording turns a verified statement about webmKey into a Recording.
func newRecording(webmKey string, st *manifest.Statement) (*Recording, error) {
	p := &st.Predicate
	r := &Recording{
		ID: p.RecordingID, Consultation: p.Consultation, Patient: p.Patient, Key: webmKey,
		Started: p.Started, Ended: p.Ended, Size: p.SizeBytes, Recovered: p.Recovered, Previous: p.Previous, sha256: st.SHA256(),
	}
	for _, pt := range p.Participants {
		r.Participants = append(r.Participants, Participant{ID: pt.ID, Role: ident.Role(pt.Role), Joined: pt.Joined, Left: pt.Left})
	}
	for _, t := range p.Tracks {
		r.Tracks = append(r.Tracks, Track{Number: t.Number, Participant: t.Participant, Kind: t.Kind, Codec: t.Codec, FirstMS: t.FirstMS, LastMS: t.LastMS})
	}
	for _, e := range p.Events {
		r.Events = append(r.Events, Event{Type: e.Type, Participant: e.Participant, OffsetMS: e.OffsetMS})
	}
	if c := p.Chunks; c != nil {
		r.chunks = &chunkDigests{size: c.Size, sums: make([][32]byte, len(c.SHA256))}
		for i := range c.SHA256 {
			r.chunks.sums[i], _ = c.Digest(int64(i)) // Verify has checked the syntax
		}
	}
	return r, nil
}

// Verified is a recording's object opened for serving. It is an
// io.ReadSeeker (so http.ServeContent serves Range requests from it) whose
// Read returns only bytes proven to be the signed ones: each chunk is read
// whole from the store, hashed and compared with its signed digest before
// any of it is returned. A mismatch hides the recording, raises the alert,
// calls OnTampered and fails this and every later Read.
//
// Recordings signed before chunk digests existed are hashed whole when
// opened (one full read per request) and then served.
type Verified struct {
	// OnTampered, if set, is called once when a mismatch is found, with
	// what differs (for the audit log).
	OnTampered func(detail string)

	x      *Index
	rec    *Recording
	obj    io.ReadSeekCloser
	objPos int64 // obj's read position; -1 when unknown
	pos    int64
	buf    []byte // the verified chunk bufIdx
	bufIdx int64
	err    error // sticky
}

// Open opens r, a recording this index returned, for a verified read. A
// missing object is
// ErrNotVisible; one whose size or (for old manifests) whole digest is not
// the signed one is ErrTampered.
func (x *Index) Open(ctx context.Context, r *Recording) (*Verified, error) {
	x.mu.RLock()
	ours := r != nil && x.byID[r.ID] == r
	x.mu.RUnlock()
	if !ours {
		return nil, ErrNotVisible // only what this index verified is opened
	}
	obj, info, err := x.Store.Get(ctx, r.Key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotVisible
	}
	if err != nil {
		return nil, fmt.Errorf("replay: open recording %s: %w", r.ID, err)
	}
	v := &Verified{x: x, rec: r, obj: obj, bufIdx: -1}
	if info.Size != r.Size {
		obj.Close()
		return nil, v.tampered(fmt.Sprintf("object has %d bytes, manifest signed %d", info.Size, r.Size))
	}
	if r.chunks == nil {
		if err := v.checkWhole(); err != nil {
			obj.Close()
			return nil, err
		}
	}
	return v, nil
}

// Recording is what v serves.
func (v *Verified) Recording() *Recording { return v.rec }

// Err is the error that stopped v, if any.
func (v *Verified) Err() error { return v.err }

// Close closes the underlying object.
func (v *Verified) Close() error { return v.obj.Close() }

// Seek implements io.Seeker within the signed length; it does no I/O.
func (v *Verified) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += v.pos
	case io.SeekEnd:
		off += v.rec.Size
	}
	if off < 0 {
		return v.pos, fmt.Errorf("replay: seek to %d before the start", off)
	}
	v.pos = off
	return off, nil
}

// Read implements io.Reader, returning only verified bytes.
func (v *Verified) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.pos >= v.rec.Size {
		return 0, io.EOF
	}
	if v.rec.chunks == nil {
		return v.readChecked(p)
	}
	i := v.pos / v.rec.chunks.size
	if i != v.bufIdx {
		if err := v.load(i); err != nil {
			return 0, err
		}
	}
	n := copy(p, v.buf[v.pos-i*v.rec.chunks.size:])
	v.pos += int64(n)
	return n, nil
}

// CheckAt verifies the chunk holding offset off now, so a request whose
// first bytes are bad is refused before any header is sent.
func (v *Verified) CheckAt(off int64) error {
	if v.err != nil || v.rec.chunks == nil || off < 0 || off >= v.rec.Size {
		return v.err
	}
	return v.load(off / v.rec.chunks.size)
}

// load reads chunk i whole and keeps it only if its digest is the signed one.
func (v *Verified) load(i int64) error {
	cs := v.rec.chunks.size
	start := i * cs
	n := min(cs, v.rec.Size-start)
	if i >= int64(len(v.rec.chunks.sums)) {
		return v.fail(v.tampered(fmt.Sprintf("no signed digest for chunk %d", i)))
	}
	if v.objPos != start {
		if _, err := v.obj.Seek(start, io.SeekStart); err != nil {
			v.objPos = -1
			return v.fail(fmt.Errorf("replay: read recording %s at %d: %w", v.rec.ID, start, err))
		}
	}
	if int64(cap(v.buf)) < n {
		v.buf = make([]byte, cs)
	}
	v.buf = v.buf[:n]
	v.bufIdx = -1
	m, err := io.ReadFull(v.obj, v.buf)
	v.objPos = start + int64(m)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return v.fail(v.tampered(fmt.Sprintf("chunk %d ends after %d of %d bytes", i, m, n)))
	}
	if err != nil {
		v.objPos = -1
		return v.fail(fmt.Errorf("replay: read recording %s at %d: %w", v.rec.ID, start, err))
	}
	if sha256.Sum256(v.buf) != v.rec.chunks.sums[i] {
		return v.fail(v.tampered(fmt.Sprintf("chunk %d (bytes %d-%d) does not match its signed digest", i, start, start+n-1)))
	}
	v.bufIdx = i
	return nil
}

// checkWhole hashes an old recording (no chunk digests) in full.
func (v *Verified) checkWhole() error {
	h := sha256.New()
	n, err := io.Copy(h, v.obj)
	if err != nil {
		return fmt.Errorf("replay: read recording %s to check it: %w", v.rec.ID, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != v.rec.Size || got != v.rec.sha256 {
		return v.tampered(fmt.Sprintf("object has %d bytes sha256 %s, manifest signed sha256 %s", n, got, v.rec.sha256))
	}
	v.objPos = n
	return nil
}

// readChecked serves an old recording already hashed whole by Open.
func (v *Verified) readChecked(p []byte) (int, error) {
	if v.objPos != v.pos {
		if _, err := v.obj.Seek(v.pos, io.SeekStart); err != nil {
			return 0, v.fail(fmt.Errorf("replay: read recording %s at %d: %w", v.rec.ID, v.pos, err))
		}
		v.objPos = v.pos
	}
	p = p[:min(int64(len(p)), v.rec.Size-v.pos)]
	n, err := v.obj.Read(p)
	v.pos += int64(n)
	v.objPos += int64(n)
	if errors.Is(err, io.EOF) && v.pos < v.rec.Size {
		err = v.fail(v.tampered("object ended early"))
	}
	return n, err
}

func (v *Verified) fail(err error) error {
	v.err = err
	return err
}

// tampered hides the recording, raises the alert and tells OnTampered.
func (v *Verified) tampered(detail string) error {
	v.x.Hide(v.rec, AlertDigestMismatch, detail)
	if v.OnTampered != nil {
		v.OnTampered(detail)
	}
	return fmt.Errorf("%w: %s: %s", ErrTampered, v.rec.ID, detail)
}
