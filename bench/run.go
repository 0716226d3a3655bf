package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// maxErrorSamples bounds the error messages kept in a result.
const maxErrorSamples = 10

// Run drives the server with cfg.N consultations and returns the result.
// A failing consultation is counted, never fatal; Run fails only when the
// bench cannot run at all (the server does not start, /metrics or the
// profile endpoint is missing). When live is not nil a progress line is
// drawn on it. Run is bounded in time: joins, the consultations' duration,
// then at most cfg.VerifyTimeout for the recordings.
func Run(ctx context.Context, cfg Config, live io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ProfileFile != "" && cfg.Server.InProcess {
		cfg.Server.ExtraArgs = append(cfg.Server.ExtraArgs, "--pprof")
	}
	clientLog, closeLog, err := openClientLog(cfg.ClientLog)
	if err != nil {
		return nil, err
	}
	defer closeLog()
	srv, err := startServer(ctx, cfg.Server, cfg.Record)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	base, err := scrape(ctx, srv.admin)
	if err != nil {
		return nil, err
	}
	if cfg.ProfileFile != "" {
		if err := checkProfiling(ctx, srv.admin); err != nil {
			return nil, err
		}
	}

	res := &Result{Version: ResultVersion, Params: cfg, Started: time.Now(), Errors: map[string]int{}}
	res.Params.Server.Data = "" // a temporary directory with InProcess; not a parameter
	joinSpan := time.Duration(float64(cfg.N-1) / cfg.JoinRate * float64(time.Second))
	runCtx, cancel := context.WithTimeout(ctx, joinSpan+cfg.Duration+time.Minute)
	defer cancel()

	var smp sampler
	smpCtx, stopSampler := context.WithCancel(runCtx)
	smpDone := make(chan struct{})
	go func() { defer close(smpDone); smp.run(smpCtx, srv.admin, time.Second) }()

	ev := &progress{}
	cpu0 := selfCPU()
	start := time.Now()
	liveDone := make(chan struct{})
	var liveWG sync.WaitGroup
	if live != nil {
		liveWG.Add(1)
		go func() { defer liveWG.Done(); ev.show(live, cfg.N, start, 500*time.Millisecond, liveDone) }()
	}
	profErr := make(chan error, 1)
	if cfg.ProfileFile != "" {
		go func() { profErr <- profileSteady(runCtx, srv, &cfg, ev, start) }()
	}

	runID := strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
	calls := make([]*callResult, cfg.N)
	checks := make([]recordingCheck, cfg.N)
	interval := time.Duration(float64(time.Second) / cfg.JoinRate)
	var wg sync.WaitGroup
	for i := range cfg.N {
		at := start.Add(time.Duration(i) * interval)
		if !sleepUntil(runCtx, at) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &call{cfg: &cfg, srv: srv, run: runID, idx: i, events: ev, log: clientLog.With("call", i)}
			r := cl.execute(runCtx, at)
			calls[i] = r
			if r.ended.IsZero() {
				return
			}
			ev.left.Add(1)
			if cfg.Record && srv.store != nil {
				vctx, vcancel := context.WithTimeout(ctx, cfg.VerifyTimeout)
				checks[i] = awaitRecording(vctx, srv.store, srv.mkeys, r.pid, r.cid, r.ended)
				vcancel()
				if checks[i].stored {
					ev.stored.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	stopSampler()
	<-smpDone
	close(liveDone)
	liveWG.Wait()
	res.ElapsedSeconds = time.Since(start).Seconds()
	res.Nodes = srv.entries.spread()
	res.BenchCPUSeconds = selfCPU() - cpu0

	aggregate(res, calls, checks)
	if cfg.Record && srv.store == nil {
		res.Recordings.Note = "not checked: " + srv.storeErr.Error()
	}
	res.Server = serverFigures(smp.all(), base, calls, start.Add(cfg.Duration), res.Consultations.Joined)
	res.Server.ScrapeErrors = smp.errs
	if cfg.ProfileFile != "" {
		if err := <-profErr; err != nil {
			res.ErrorSamples = append(res.ErrorSamples, err.Error())
		} else {
			res.Server.Profile = cfg.ProfileFile
		}
	}
	return res, nil
}

// selfCPU is this process's user and system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// checkProfiling fails early, with the remedy, when the server has no pprof endpoint.
func checkProfiling(ctx context.Context, admin string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/debug/pprof/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: --cpuprofile needs the server's pprof endpoint, but %s/debug/pprof/ answered %s: start the server with --pprof", admin, resp.Status)
	}
	return nil
}

// profileSteady waits until every consultation is past its upgrade, then
// profiles the server until just before the first planned leave.
func profileSteady(ctx context.Context, srv *server, cfg *Config, ev *progress, start time.Time) error {
	firstLeave := start.Add(cfg.Duration)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for ev.settled.Load() < int64(cfg.N) && time.Until(firstLeave) > 3*time.Second {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	secs := int(time.Until(firstLeave)/time.Second) - 1
	if cfg.ProfileSeconds > 0 {
		secs = min(secs, cfg.ProfileSeconds)
	}
	if secs < 1 {
		return errors.New("cpu profile: no steady state to profile (every consultation up before the first leave); lengthen --duration")
	}
	return srv.profile(ctx, secs, cfg.ProfileFile)
}
