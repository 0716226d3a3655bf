package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/sfu"
)

// cpuWaitWindow is how far back --admit-cpu-wait looks: long enough that one
// garbage collection or burst of keyframes does not refuse anyone, short
// enough that a node sliding into overload stops admitting within seconds.
const cpuWaitWindow = 10 * time.Second

// cpuWait watches how long the server's runnable goroutines wait for a CPU
// (the runtime's /sched/latencies:seconds, exported as
// go_sched_latencies_seconds), and says the server is busy while the 90th
// percentile of those waits over the last cpuWaitWindow is above limit.
// Every packet crosses about four goroutine hand-offs in the server, so
// this is media delay that is already there (docs/performance.md: 22 % of
// waits over 10 ms at N=150 on two cores, where audio was seconds late; 2.6
// % at N=50). A busy server refuses joins that would start a consultation
// (server_full), as a full one does.
//
// The percentile is the upper bound of the runtime's bucket it falls in;
// the buckets are about 19 % apart, so the server may turn busy from about
// 0.84 × limit.
type cpuWait struct {
	limit time.Duration
	log   *slog.Logger
	// window replaces cpuWaitWindow when set (tests).
	window time.Duration
	// read fills h with the runtime's histogram (tests replace it).
	read func(h *rtmetrics.Float64Histogram)

	busy atomic.Bool
	ring []rtmetrics.Float64Histogram // the window's reads, oldest first
	// Transitions are logged at most once a minute (a percentile hovering
	// at the limit flips every second): lastLog, and flips since then.
	lastLog time.Time
	flips   int
}

// wireCPUWait makes the --admit-cpu-wait watcher when limit is set (nil
// otherwise) and hands its verdict to the cluster's placement or, on a
// single node, to the SFU. The caller runs it once the SFU exists.
func wireCPUWait(limit time.Duration, cl *clusterRun, sfuCfg *sfu.Config, met *metrics, log *slog.Logger) *cpuWait {
	if limit <= 0 {
		return nil
	}
	w := &cpuWait{limit: limit, log: log}
	met.watchCPUWait(w)
	if cl != nil {
		// In a cluster placement alone refuses (the node record says
		// busy): a local refusal, a heartbeat ahead of the record, would
		// refuse a consultation just placed here while other nodes have
		// room.
		cl.busy = w.Busy
	} else {
		sfuCfg.Busy = w.Busy
	}
	return w
}

// Busy reports whether the server is too starved of CPU to start another
// consultation.
func (w *cpuWait) Busy() bool { return w.busy.Load() }

// run takes a step every step until ctx ends.
func (w *cpuWait) run(ctx context.Context, step time.Duration) {
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		w.step(step, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step reads the histogram, keeps the window's reads (window/every steps),
// and judges the window.
func (w *cpuWait) step(every time.Duration, now time.Time) {
	read, window := w.read, w.window
	if read == nil {
		read = readSchedLatencies
	}
	if window <= 0 {
		window = cpuWaitWindow
	}
	var h rtmetrics.Float64Histogram
	read(&h)
	w.ring = append(w.ring, h)
	if n := max(int(window/every), 1); len(w.ring) > n+1 {
		w.ring = w.ring[len(w.ring)-n-1:]
	}
	if len(w.ring) > 1 {
		w.observe(waitQuantile(&w.ring[0], &w.ring[len(w.ring)-1], 0.9), window, now)
	}
}

// observe takes one window's p90 (seconds; NaN when no goroutine waited).
func (w *cpuWait) observe(p90 float64, window time.Duration, now time.Time) {
	busy := p90 > w.limit.Seconds()
	if w.busy.Swap(busy) == busy {
		return
	}
	w.flips++
	if now.Sub(w.lastLog) < time.Minute {
		return
	}
	p := fmt.Sprintf("%.1fms", p90*1e3) // NaN and +Inf print as words
	if busy {
		w.log.Warn("the server's goroutines wait too long for a CPU; joins that would start a consultation are refused with server_full until they do not",
			"p90", p, "limit", w.limit.String(), "window", window.String(), "changes_since_last_line", w.flips)
	} else {
		w.log.Info("the server's goroutines get a CPU in time again; new consultations are admitted", "p90", p, "changes_since_last_line", w.flips)
	}
	w.lastLog, w.flips = now, 0
}

func readSchedLatencies(h *rtmetrics.Float64Histogram) {
	s := []rtmetrics.Sample{{Name: "/sched/latencies:seconds"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() == rtmetrics.KindFloat64Histogram {
		*h = *s[0].Value.Float64Histogram()
	}
}

// waitQuantile is the q-quantile of what histogram cur added since prev
// (the same buckets, cumulative counts), as the upper bound of the bucket it
// falls in; NaN when nothing was added.
func waitQuantile(prev, cur *rtmetrics.Float64Histogram, q float64) float64 {
	if len(cur.Counts) == 0 || len(prev.Counts) != len(cur.Counts) {
		return math.NaN()
	}
	var total uint64
	for i := range cur.Counts {
		total += cur.Counts[i] - prev.Counts[i]
	}
	if total == 0 {
		return math.NaN()
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i := range cur.Counts {
		seen += cur.Counts[i] - prev.Counts[i]
		if seen >= want {
			return cur.Buckets[i+1]
		}
	}
	return cur.Buckets[len(cur.Buckets)-1]
}
