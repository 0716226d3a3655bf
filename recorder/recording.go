package recorder

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/sfu"
)

// recording is one consultation session being recorded. It is the sfu.Tap
// the Recorder hands out; the SFU calls it from several goroutines.
type recording struct {
	r          *Recorder
	id         string
	binding    sfu.Binding
	path       string
	started    time.Time
	startNanos int64
	spool      *spoolWriter
	timeline   timeline

	stopSync chan struct{}
	syncDone chan struct{}

	mu       sync.Mutex // guards tracks, closed and declared
	tracks   []*track
	closed   bool
	ids      map[string]uint16 // participant/kind/codec -> spool track id
	declared map[uint16]bool   // spool track ids declared in the spool

	closeOnce sync.Once
	failed    atomic.Bool           // set once failErr is set
	failErr   atomic.Pointer[error] // the first failure
}

// OnTrack implements sfu.Tap.
func (rec *recording) OnTrack(info sfu.TrackInfo) sfu.TrackSink {
	c := codecFromMime(info.MimeType)
	if c == codecUnknown {
		rec.r.log.Warn("track not recorded: codec cannot go in WebM",
			"recording", rec.id, "mime", info.MimeType, "participant", info.Participant)
		return nil
	}
	rec.mu.Lock()
	if rec.closed {
		rec.mu.Unlock()
		return nil
	}
	name := info.Role + "/" + string(info.Kind)
	q := newQueue(rec.r.opts.QueueSize, rec.r.opts.Clock, &rec.r.queueDrops, rec.r.log, name)
	participant := info.Participant
	q.srOffset = func(ntp uint64, arrival time.Time) int64 {
		return rec.timeline.observe(participant, ntp, arrival)
	}
	t := newTrack(rec, info, c, q)
	t.id = rec.trackID(info, c)
	rec.tracks = append(rec.tracks, t)
	rec.mu.Unlock()
	if c.video() && info.RequestKeyframe != nil {
		// A recording can only start at a keyframe.
		t.lastKeyReq = rec.r.opts.Clock()
		info.RequestKeyframe(sfu.KeyframeRecorderSync)
	}
	go t.run()
	return q
}

// OnEvent implements sfu.Tap. Events after Close are ignored.
func (rec *recording) OnEvent(ev sfu.Event) {
	if rec.failed.Load() {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = rec.r.opts.Clock()
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.closed {
		return
	}
	err := rec.spool.writeJSON(recEvent, spoolEvent{
		Time: ev.Time, Type: string(ev.Type), Participant: ev.Participant, Role: ev.Role, Path: ev.Path,
	})
	if err != nil {
		rec.fail(err)
	}
}

// Close implements sfu.Tap. It drains the tracks, closes the spool and
// finalizes in the background; Recorder.Wait waits for that.
func (rec *recording) Close() {
	rec.closeOnce.Do(func() {
		rec.mu.Lock()
		rec.closed = true
		tracks := rec.tracks
		rec.mu.Unlock()
		for _, t := range tracks {
			t.q.Close()
		}
		for _, t := range tracks {
			<-t.done
		}
		close(rec.stopSync)
		<-rec.syncDone
		if !rec.failed.Load() {
			if err := rec.spool.writeJSON(recEnd, spoolEnd{Ended: rec.r.opts.Clock()}); err != nil {
				rec.fail(err)
			}
		}
		if err := rec.spool.close(); err != nil {
			rec.fail(err)
		}
		rec.r.wg.Add(1)
		go func() {
			defer rec.r.wg.Done()
			defer rec.r.release(rec.path)
			if p := rec.failErr.Load(); p != nil {
				rec.r.finalizePartial(context.Background(), rec.path, *p)
				return
			}
			rec.r.finalize(context.Background(), rec.path, false)
		}()
	})
}

// writeFrame declares t on its first frame and appends the frame. It
// reports whether the frame was written.
func (rec *recording) writeFrame(t *track, ms int64, f assembled) bool {
	if rec.failed.Load() {
		return false
	}
	if !t.declared {
		if err := rec.declare(t, f); err != nil {
			rec.fail(err)
			return false
		}
		t.declared = true
	}
	if err := rec.spool.writeFrame(t.id, ms, f.keyframe, f.data); err != nil {
		rec.fail(err)
		return false
	}
	return true
}

// trackID returns the spool track id for t's (participant, kind, codec).
// Ids are handed out in OnTrack order, so track numbers in the file do not
// depend on which goroutine writes first; a participant's later track of the
// same kind and codec (video renegotiated after a downgrade) continues the
// same WebM track. Called locked.
func (rec *recording) trackID(info sfu.TrackInfo, c codec) uint16 {
	key := info.Participant + "\x00" + string(info.Kind) + "\x00" + c.String()
	if id, ok := rec.ids[key]; ok {
		return id
	}
	if rec.ids == nil {
		rec.ids, rec.declared = map[string]uint16{}, map[uint16]bool{}
	}
	id := uint16(len(rec.ids) + 1)
	rec.ids[key] = id
	return id
}

// declare writes t's track declaration before its first frame, once per id.
func (rec *recording) declare(t *track, f assembled) error {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.declared[t.id] {
		return nil
	}
	err := rec.spool.writeJSON(recTrack, spoolTrack{
		ID: t.id, Participant: t.info.Participant, Role: t.info.Role, Kind: string(t.info.Kind),
		Codec: t.codec.String(), ClockRate: t.info.ClockRate, Channels: t.info.Channels,
		Width: f.width, Height: f.height,
	})
	if err != nil {
		return err
	}
	rec.declared[t.id] = true
	return nil
}

// fail marks the recording failed, once, loudly. Media keeps flowing to the
// SFU's other consumers; this recording just stops taking it.
func (rec *recording) fail(err error) {
	err = fmt.Errorf("recording %s (consultation %s): spool write: %w; recording stopped, what was spooled is kept as partial",
		rec.id, rec.binding.Consultation, err)
	if !rec.failErr.CompareAndSwap(nil, &err) {
		return
	}
	rec.failed.Store(true)
	rec.r.log.Error("recording stopped", "recording", rec.id, "consultation", rec.binding.Consultation, "err", err)
}

func (rec *recording) syncLoop(every time.Duration) {
	defer close(rec.syncDone)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if rec.failed.Load() {
				continue
			}
			if err := rec.spool.sync(); err != nil {
				rec.fail(err)
			}
		case <-rec.stopSync:
			return
		}
	}
}

func (rec *recording) failedRecording(err error) *Recording {
	return &Recording{
		ID: rec.id, Consultation: rec.binding.Consultation, Patient: rec.binding.Patient,
		Started: rec.started, Ended: rec.r.opts.Clock(), Failed: true, Err: err,
	}
}
