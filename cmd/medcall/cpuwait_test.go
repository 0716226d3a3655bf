package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	rtmetrics "runtime/metrics"
	"sync"
	"testing"
	"time"
)

// hist is a cumulative histogram with the runtime's shape: counts per
// bucket between bounds (s).
func hist(counts ...uint64) rtmetrics.Float64Histogram {
	return rtmetrics.Float64Histogram{Counts: counts, Buckets: []float64{0, 0.001, 0.01, 0.1, math.Inf(1)}}
}

// TestWaitQuantileOverTheWindow: the quantile is taken over what the
// histogram added between two reads, as the upper bound of its bucket.
func TestWaitQuantileOverTheWindow(t *testing.T) {
	prev, cur := hist(1000, 0, 0, 0), hist(1900, 50, 40, 10)
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 0.001}, {0.9, 0.001}, {0.95, 0.01}, {0.99, 0.1}, {1, math.Inf(1)}} {
		if got := waitQuantile(&prev, &cur, tc.q); got != tc.want {
			t.Errorf("q%.2f over the window = %v, want %v", tc.q, got, tc.want)
		}
	}
	// The 1000 quick waits before the window do not dilute it.
	p, c := hist(1000, 0, 0, 0), hist(1010, 0, 90, 0)
	if got := waitQuantile(&p, &c, 0.9); got != 0.1 {
		t.Errorf("p90 of 10 quick and 90 slow (10-100 ms) waits = %v, want 0.1", got)
	}
	if got := waitQuantile(&c, &c, 0.9); !math.IsNaN(got) {
		t.Errorf("p90 of no waits = %v, want NaN", got)
	}
}

// TestCPUWaitTurnsBusyAndBack: the watcher says busy once the window's p90
// exceeds the limit, and admits again once the window holds quick waits
// only.
func TestCPUWaitTurnsBusyAndBack(t *testing.T) {
	var mu sync.Mutex
	var quick, slow uint64
	w := &cpuWait{limit: 50 * time.Millisecond, window: 50 * time.Millisecond, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		read: func(h *rtmetrics.Float64Histogram) {
			mu.Lock()
			defer mu.Unlock()
			*h = hist(quick, 0, 0, slow)
		}}
	add := func(q, s uint64) {
		mu.Lock()
		quick, slow = quick+q, slow+s
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.run(ctx, 5*time.Millisecond)
	until := func(want bool, feed func()) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for w.Busy() != want {
			if time.Now().After(deadline) {
				t.Fatalf("busy stayed %v", !want)
			}
			feed()
			time.Sleep(time.Millisecond)
		}
	}
	until(true, func() { add(80, 20) }) // p90 in the 0.1 s-and-over bucket
	until(false, func() { add(100, 0) })
	until(true, func() { add(85, 15) })
	add(95, 5) // p90 quick again, but the window still holds the slow ones
	if !w.Busy() {
		t.Error("admitted again before the slow waits left the window")
	}
}
