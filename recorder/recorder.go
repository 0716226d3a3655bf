// Package recorder records consultations to WebM. It is a tap on the SFU:
// each published track feeds a bounded queue; a goroutine per track reorders,
// depacketizes (Opus, VP8, VP9) and places frames on one timeline for the
// whole recording; frames go to a crash-safe spool on local disk, and when
// the consultation ends the spool becomes one seekable WebM file, handed to a
// Publisher. Recover finalizes spools left behind by a crash.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/sfu"
)

// Options configures a Recorder. The zero value of each field but SpoolDir
// (and DataDir or Publisher) selects a default.
type Options struct {
	// SpoolDir holds spools of recordings in progress. Required.
	SpoolDir string
	// Publisher takes finished recordings (in the server, an Uploader). Required.
	Publisher Publisher
	// SyncInterval bounds how much media a crash can lose. Default 1 s.
	SyncInterval time.Duration
	// QueueSize is the number of packets queued per track before dropping. Default 1024.
	QueueSize int
	// Logger receives the recorder's logs. Default slog.Default().
	Logger *slog.Logger
	// Clock stamps packet arrivals, events and recording start. Default time.Now.
	// Tests inject a fake clock to run a long session in little time.
	Clock func() time.Time
}

// Stats are the recorder's counters, for metrics.
type Stats struct {
	QueueDrops uint64 // packets dropped because a track queue was full
	Failed     uint64 // recordings that failed
	Completed  uint64 // recordings published as complete
	Recovered  uint64 // of those, finalized from an orphaned spool
	Active     int    // recordings in progress
	SpoolBytes int64  // bytes in the spool directory now
}

// Recorder records consultations. Its Open method is an sfu.TapFactory.
type Recorder struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	active map[string]bool // spool paths of recordings in progress

	wg         sync.WaitGroup // finalizations in flight
	queueDrops atomic.Uint64
	failed     atomic.Uint64
	completed  atomic.Uint64
	recovered  atomic.Uint64

	// openSpool creates a spool file; tests replace it to inject write errors.
	openSpool func(path string) (spoolFile, error)
}

// ErrNoSpoolDir means Options.SpoolDir is empty.
var ErrNoSpoolDir = errors.New("recorder: no spool directory")

// New returns a Recorder, creating the spool directory if needed.
func New(opts Options) (*Recorder, error) {
	if opts.SpoolDir == "" {
		return nil, ErrNoSpoolDir
	}
	if opts.Publisher == nil {
		return nil, errors.New("recorder: need a Publisher")
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Second
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if err := os.MkdirAll(opts.SpoolDir, 0o750); err != nil {
		return nil, fmt.Errorf("recorder: spool directory: %w", err)
	}
	return &Recorder{
		opts:   opts,
		log:    opts.Logger.With("component", "recorder"),
		active: map[string]bool{},
		openSpool: func(path string) (spoolFile, error) {
			return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		},
	}, nil
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	active := len(r.active)
	r.mu.Unlock()
	var spool int64
	if entries, err := os.ReadDir(r.opts.SpoolDir); err == nil {
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				spool += info.Size()
			}
		}
	}
	return Stats{
		QueueDrops: r.queueDrops.Load(),
		Failed:     r.failed.Load(),
		Completed:  r.completed.Load(),
		Recovered:  r.recovered.Load(),
		Active:     active,
		SpoolBytes: spool,
	}
}

// Wait blocks until every recording closed so far has been finalized and
// published, or ctx ends.
func (r *Recorder) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Open starts recording a consultation session. It returns nil when the
// binding does not ask for a recording, and nil (after reporting the
// failure) when the spool cannot be created: forwarding never depends on
// the recorder. Patient and consultation ids are taken from b only.
func (r *Recorder) Open(b sfu.Binding) sfu.Tap {
	if !b.Record {
		return nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		r.log.Error("recording not started: no id", "consultation", b.Consultation, "err", err)
		r.failed.Add(1)
		return nil
	}
	rid := id.String()
	started := r.opts.Clock()
	if _, _, err := store.RecordingKeys(b.Patient, b.Consultation, rid); err != nil {
		r.log.Error("recording not started: bad binding", "recording", rid, "err", err)
		r.failed.Add(1)
		return nil
	}
	path := filepath.Join(r.opts.SpoolDir, rid+".spool")
	rec := &recording{
		r: r, id: rid, binding: b, path: path,
		started: started, startNanos: started.UnixNano(),
		stopSync: make(chan struct{}), syncDone: make(chan struct{}),
	}
	f, err := r.openSpool(path)
	if err == nil {
		rec.spool, err = newSpoolWriter(f)
		if err == nil {
			err = rec.spool.writeJSON(recHeader, spoolHeader{
				Recording: rid, Consultation: b.Consultation, Patient: b.Patient, Started: started,
			})
		}
	}
	if err != nil {
		err = fmt.Errorf("recording %s (consultation %s): spool create: %w; recording marked failed", rid, b.Consultation, err)
		r.failed.Add(1)
		r.log.Error("recording failed", "recording", rid, "consultation", b.Consultation, "err", err)
		if rec.spool != nil {
			rec.spool.close()
		} else if f != nil {
			f.Close()
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.publishFailed(context.Background(), rec.failedRecording(err))
		}()
		return nil
	}
	r.mu.Lock()
	r.active[path] = true
	r.mu.Unlock()
	go rec.syncLoop(r.opts.SyncInterval)
	r.log.Info("recording started", "recording", rid, "consultation", b.Consultation)
	return rec
}

func (r *Recorder) release(path string) {
	r.mu.Lock()
	delete(r.active, path)
	r.mu.Unlock()
}

func (r *Recorder) isActive(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[path]
}

// publishFailed hands a failed recording to the publisher so its failure is
// on record; it is never presented as complete.
func (r *Recorder) publishFailed(ctx context.Context, rec *Recording) {
	rec.Failed = true
	if err := r.opts.Publisher.Publish(ctx, rec, ""); err != nil {
		r.log.Error("publishing failed recording", "recording", rec.ID, "err", err)
	}
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// The recorder is, to the SFU, a tap factory handing out taps and sinks.
var (
	_ sfu.TapFactory = (*Recorder)(nil).Open
	_ sfu.Tap        = (*recording)(nil)
	_ sfu.TrackSink  = (*queue)(nil)
)
