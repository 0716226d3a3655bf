package main

import (
	"context"
	"log/slog"
	"math"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
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
// this is media delay that is already there (README, Performance: 22 % of
// waits over 10 ms at N=150 on two cores, where audio was seconds late; 2.6
// % at N=50). A busy server refuses joins that would start a consultation
// (server_full), as a full one does.
type cpuWait struct {
	limit time.Duration
	log   *slog.Logger
	// window replaces cpuWaitWindow when set (tests).
	window time.Duration
	// read fills h with the runtime's histogram (tests replace it).
	read func(h *rtmetrics.Float64Histogram)

	busy atomic.Bool
	p90  atomic.Uint64 // math.Float64bits of the last window's p90, seconds
}

// Busy reports whether the server is too starved of CPU to start another
// consultation.
func (w *cpuWait) Busy() bool { return w.busy.Load() }

// run samples every step until ctx ends; the window is the last
// cpuWaitWindow/step samples.
func (w *cpuWait) run(ctx context.Context, step time.Duration) {
	if w.read == nil {
		w.read = readSchedLatencies
	}
	window := cpuWaitWindow
	if w.window > 0 {
		window = w.window
	}
	n := max(int(window/step), 1)
	ring := make([]rtmetrics.Float64Histogram, 0, n+1)
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		var h rtmetrics.Float64Histogram
		w.read(&h)
		ring = append(ring, h)
		if len(ring) > n+1 {
			ring = ring[1:]
		}
		if len(ring) > 1 {
			w.observe(waitQuantile(&ring[0], &ring[len(ring)-1], 0.9))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observe takes one window's p90 (seconds; NaN when no goroutine waited)
// and logs when the server turns busy or recovers.
func (w *cpuWait) observe(p90 float64) {
	w.p90.Store(math.Float64bits(p90))
	busy := p90 > w.limit.Seconds()
	if w.busy.Swap(busy) == busy {
		return
	}
	if busy {
		w.log.Warn("the server's goroutines wait too long for a CPU; joins that would start a consultation are refused with server_full until they do not",
			"p90_ms", math.Round(p90*1e4)/10, "limit", w.limit.String(), "window", cpuWaitWindow.String())
	} else {
		w.log.Info("the server's goroutines get a CPU in time again; new consultations are admitted", "p90_ms", math.Round(p90*1e4)/10)
	}
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
