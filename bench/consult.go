package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// Error stages, the keys of Result.Errors.
const (
	stageJoin = "join"
	// stageServerFull is a join the server refused with server_full: it
	// is at capacity, --max-consultations or --admit-cpu-wait (the
	// consultation never started).
	stageServerFull     = "join_refused_server_full"
	stageUpgrade        = "upgrade"
	stageUpgradeTimeout = "upgrade_timeout"
	stageDowngrade      = "downgrade"
	stageLeave          = "leave"
	stageRecording      = "recording"
	stageRecordingTime  = "recording_timeout"
)

// upgradeWait bounds the wait for the first keyframe after an upgrade.
const upgradeWait = 10 * time.Second

// stream is what one participant received of the other's track of one kind.
type stream struct {
	kind               string
	expected, received uint64
	jitter             time.Duration
	delays             []time.Duration // first packet of a frame, sent to received
	pace               float64         // audio: packets sent / packets real time asks for
}

// callResult is everything one consultation measured.
type callResult struct {
	idx            int
	path           string
	pid, cid       string
	joins          []time.Duration // token in hand to Dial returned connected
	upgrades       []time.Duration // upgrade action to first keyframe at the peer
	upgradedBoth   bool
	streams        []stream
	ended          time.Time // when the last participant had left; zero if it never ran
	errs           []stageError
	upgradeAllDone time.Time
}

type stageError struct {
	stage string
	err   error
}

// call is one consultation of a patient and a clinician.
type call struct {
	cfg    *Config
	srv    *server
	run    string // run id, keeps ids unique across runs on one server
	idx    int
	events *progress
	log    *slog.Logger // its participants' client logs (Config.ClientLog)
}

func (c *call) fail(r *callResult, stage string, err error) {
	r.errs = append(r.errs, stageError{stage, err})
	c.events.errors.Add(1)
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	tm := time.NewTimer(time.Until(t))
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func (c *call) dial(ctx context.Context, r *callResult, sub, role string) *client.Client {
	tok, err := c.srv.mint(sub, role, r.cid, r.pid, c.cfg.Record, c.cfg.Duration+10*time.Minute)
	if err != nil {
		c.fail(r, stageJoin, err)
		return nil
	}
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(dctx, client.Options{
		URL: c.srv.entries.entry(2*c.idx + len(r.joins)), Token: tok, Consultation: r.cid,
		AudioFile: c.cfg.AudioFile, VideoFile: c.cfg.VideoFile,
		Prenegotiate: r.path == PathPrenegotiated, Fingerprint: true,
		RelayOnly: c.cfg.Relay,
		Logger:    c.log.With("role", role),
	})
	if err != nil {
		stage := stageJoin
		if pe := (*client.ProtocolError)(nil); errors.As(err, &pe) && pe.Code == signaling.CodeServerFull {
			stage = stageServerFull
		}
		c.log.Warn("join failed", "role", role, "err", err)
		c.fail(r, stage, fmt.Errorf("%s: %w", role, err))
		return nil
	}
	r.joins = append(r.joins, time.Since(t0))
	c.srv.entries.land(cl.URL())
	c.events.joined.Add(1)
	return cl
}

// execute runs the consultation's script from start: join both, upgrade
// both at UpgradeAfter, downgrade at DowngradeAfter (if set), measure and
// leave at Duration.
func (c *call) execute(ctx context.Context, start time.Time) *callResult {
	r := &callResult{
		idx: c.idx, path: c.cfg.pathFor(c.idx),
		pid: fmt.Sprintf("p-%s-%d", c.run, c.idx), cid: fmt.Sprintf("c-%s-%d", c.run, c.idx),
	}
	doc := fmt.Sprintf("d-%s-%d", c.run, c.idx)
	var settle sync.Once
	settled := func() { settle.Do(func() { c.events.settled.Add(1) }) }
	defer settled()
	pat := c.dial(ctx, r, r.pid, "patient")
	if pat == nil {
		return r
	}
	defer pat.Close()
	clin := c.dial(ctx, r, doc, "clinician")
	if clin == nil {
		c.leave(r, pat)
		return r
	}
	defer clin.Close()
	ids := map[*client.Client]string{pat: r.pid, clin: doc}
	pairs := [][2]*client.Client{{pat, clin}, {clin, pat}} // sender, receiver

	if sleepUntil(ctx, start.Add(c.cfg.UpgradeAfter)) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, p := range pairs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, stage, err := upgrade(ctx, p[0], p[1], ids[p[0]], r.path)
				c.events.upgradeTries.Add(1)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					c.fail(r, stage, err)
					return
				}
				r.upgrades = append(r.upgrades, d)
				c.events.upgraded.Add(1)
			}()
		}
		wg.Wait()
		r.upgradedBoth = len(r.upgrades) == 2
		r.upgradeAllDone = time.Now()
	}
	settled()
	if c.cfg.DowngradeAfter > 0 && sleepUntil(ctx, start.Add(c.cfg.DowngradeAfter)) {
		for _, p := range pairs {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := p[0].Downgrade(dctx); err != nil {
				c.fail(r, stageDowngrade, err)
			}
			cancel()
		}
	}
	sleepUntil(ctx, start.Add(c.cfg.Duration))
	for _, p := range pairs {
		for _, kind := range []string{"audio", "video"} {
			r.streams = append(r.streams, measure(p[0], p[1], ids[p[0]], kind))
		}
	}
	c.leave(r, pat, clin)
	r.ended = time.Now()
	return r
}

func (c *call) leave(r *callResult, cls ...*client.Client) {
	for _, cl := range cls {
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := cl.Leave(lctx); err != nil {
			c.fail(r, stageLeave, err)
		}
		cancel()
	}
}

// upgrade turns on from's video by path and times it until the first
// keyframe reaches to.
func upgrade(ctx context.Context, from, to *client.Client, fromID, path string) (time.Duration, string, error) {
	t0 := time.Now()
	uctx, cancel := context.WithTimeout(ctx, upgradeWait)
	defer cancel()
	if err := from.Upgrade(uctx, path); err != nil {
		return 0, stageUpgrade, err
	}
	st, err := to.WaitReceived(uctx, fromID, "video", func(s client.TrackStats) bool { return s.Keyframes > 0 })
	if err != nil {
		return 0, stageUpgradeTimeout, fmt.Errorf("no keyframe from %s within %v of the upgrade: %w", fromID, upgradeWait, err)
	}
	return st.FirstKeyframe.Sub(t0), "", nil
}

// measure reads what to received of from's kind track, with the forwarding
// delay of every frame both ends saw (the SFU keeps RTP timestamps).
func measure(from, to *client.Client, fromID, kind string) stream {
	st := to.Received(fromID, kind)
	s := stream{kind: kind, expected: st.Expected, received: st.Packets, jitter: st.Jitter}
	if kind == "audio" {
		// Audio is one packet per 20 ms: fewer means the bench itself fell
		// behind real time, and the offered load was lower than asked.
		if sst, _ := from.Sent(kind); !sst.FirstPacket.IsZero() {
			want := float64(time.Since(sst.FirstPacket)) / float64(20*time.Millisecond)
			s.pace = float64(sst.Packets) / max(want, 1)
		}
	}
	sent := from.SendTimes(kind)
	for ts, at := range to.ReceiveTimes(fromID, kind) {
		if t0, ok := sent[ts]; ok && !at.Before(t0) {
			s.delays = append(s.delays, at.Sub(t0))
		}
	}
	return s
}

// openClientLog opens path for the participants' client logs: a logger
// writing there and its close, or one that discards when path is empty.
func openClientLog(path string) (*slog.Logger, func(), error) {
	if path == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil)), func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: --client-log: %w", err)
	}
	return slog.New(slog.NewTextHandler(f, nil)), func() { _ = f.Close() }, nil
}
