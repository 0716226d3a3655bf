package recorder

import (
	"context"
	"errors"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/medcall/medcall/sfu/ident"
)

// Recording describes one finished (or failed) recording of a consultation
// session. Consultation and Patient come only from the sfu.Binding the
// recording was opened with.
type Recording struct {
	ID           string         `json:"id"` // UUIDv7
	Consultation string         `json:"consultation"`
	Patient      string         `json:"patient"`
	Started      time.Time      `json:"started"` // wall time of the file's timestamp 0
	Ended        time.Time      `json:"ended"`
	Participants []Participant  `json:"participants"`
	Tracks       []TrackSummary `json:"tracks"`
	Events       []EventSummary `json:"events"`
	Recovered    bool           `json:"recovered"` // finalized from an orphaned spool
	Failed       bool           `json:"failed"`    // the recording is incomplete or lost
	Err          error          `json:"-"`
}

// Participant is someone whose media or events appear in a recording.
type Participant struct {
	ID     string    `json:"id"`
	Role   string    `json:"role"`
	Joined time.Time `json:"joined,omitzero"`
	Left   time.Time `json:"left,omitzero"`
}

// TrackSummary describes one track of the WebM file. FirstMS and LastMS are
// the timestamps of its first and last frame in the file.
type TrackSummary struct {
	Number      int    `json:"number"`
	Name        string `json:"name"` // e.g. "patient/audio", "guest-2/video"
	Participant string `json:"participant"`
	Role        string `json:"role"`
	Kind        string `json:"kind"`
	Codec       string `json:"codec"`
	FirstMS     int64  `json:"first_ms"`
	LastMS      int64  `json:"last_ms"`
	Frames      int    `json:"frames"`
}

// EventSummary is a consultation event with its offset in the file.
type EventSummary struct {
	Time        time.Time `json:"time"`
	OffsetMS    int64     `json:"offset_ms"`
	Type        string    `json:"type"`
	Participant string    `json:"participant,omitempty"`
	Role        string    `json:"role,omitempty"`
	Path        string    `json:"path,omitempty"`
}

var idPattern = regexp.MustCompile(ident.Pattern)

// ErrBadID means a patient, consultation or recording id is not a safe path element.
var ErrBadID = errors.New("id must match ^[A-Za-z0-9_-]{1,64}$")

// Publisher takes a finished recording. For a successful recording webmPath
// names the finished file, which the publisher moves or copies away; for a
// failed one (rec.Failed) webmPath is empty and the publisher records the
// failure without ever presenting the recording as complete.
type Publisher interface {
	Publish(ctx context.Context, rec *Recording, webmPath string) error
}

// moveFile renames src to dst, copying when they are on different file systems.
func moveFile(ctx context.Context, src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, ctxReader{ctx, in})
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Remove(src)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writeFileSync writes b to path atomically (temp file, fsync, rename).
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
