package sfu

import (
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// The quantile of what a histogram counted since an earlier read.
func TestQuantileSince(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, 1}
	prev := &metrics.Float64Histogram{Counts: []uint64{5, 5, 5, 5}, Buckets: buckets}
	h := &metrics.Float64Histogram{Counts: []uint64{5 + 90, 5 + 8, 5 + 1, 5 + 1}, Buckets: buckets}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, time.Millisecond}, {0.98, 10 * time.Millisecond}, {0.99, 100 * time.Millisecond}, {1, time.Second}} {
		if got := quantileSince(h, prev, c.q); got != c.want {
			t.Errorf("q%v: %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantileSince(prev, prev, 0.99); got != 0 {
		t.Errorf("nothing counted: %v, want 0", got)
	}
}

// Goroutines that wake often (as the server's do for every packet) wait for
// a CPU that spinning goroutines hold, and the sampler says so.
func TestSchedLatencyUnderContention(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m := &Metrics{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); watchSchedLatency(stop, m) }()
	defer func() { close(stop); <-done }()
	var run atomic.Bool
	run.Store(true)
	for range 2 {
		go func() {
			for run.Load() {
				// Holds the CPU until preempted (10 ms).
			}
		}()
	}
	for range 8 {
		go func() {
			for run.Load() {
				time.Sleep(time.Millisecond) // wakes, then waits its turn
			}
		}()
	}
	var worst time.Duration
	for range 8 {
		time.Sleep(schedSample)
		worst = max(worst, time.Duration(m.SchedLatencyP99.Load()))
	}
	run.Store(false)
	if worst < time.Millisecond {
		t.Errorf("waking goroutines sharing one CPU with spinning ones: scheduling latency p99 at most %v, want at least 1 ms", worst)
	}
}
