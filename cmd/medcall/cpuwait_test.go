package main

import (
	"log/slog"
	"math"
	rtmetrics "runtime/metrics"
	"strings"
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

// TestCPUWaitTurnsBusyAndBack: stepped by hand over a window of five
// steps, the watcher says busy once the window's p90 exceeds the limit,
// stays busy while slow waits are in the window, and admits again once the
// window holds quick waits only; its transitions are logged at most once a
// minute.
func TestCPUWaitTurnsBusyAndBack(t *testing.T) {
	var quick, slow uint64
	var logs strings.Builder
	w := &cpuWait{limit: 50 * time.Millisecond, window: 50 * time.Millisecond, log: slog.New(slog.NewTextHandler(&logs, nil)),
		read: func(h *rtmetrics.Float64Histogram) { *h = hist(quick, 0, 0, slow) }}
	const every = 10 * time.Millisecond
	now := time.Now()
	step := func(q, s uint64) bool {
		quick, slow = quick+q, slow+s
		now = now.Add(every)
		w.step(every, now)
		return w.Busy()
	}
	for i, tc := range []struct {
		quick, slow uint64
		busy        bool
	}{
		{100, 0, false}, // the first read: no window yet
		{100, 0, false},
		{0, 100, true}, // half the window's waits over 0.1 s
		{100, 0, true}, // the slow waits stay in the window for 5 steps
		{100, 0, true},
		{100, 0, true},
		{100, 0, true},
		{100, 0, false}, // and then leave it
		{0, 100, true},
		{100, 0, true},
		{100, 0, true},
		{100, 0, true},
		{100, 0, true},
		{100, 0, false},
	} {
		if got := step(tc.quick, tc.slow); got != tc.busy {
			t.Fatalf("step %d (+%d quick, +%d slow): busy %v, want %v", i, tc.quick, tc.slow, got, tc.busy)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("%d log lines for 4 changes within a minute, want 1:\n%s", n, logs.String())
	}
	now = now.Add(time.Minute)
	step(0, 100)
	if !strings.Contains(logs.String(), "changes_since_last_line=4") {
		t.Errorf("a change a minute later does not say how many went unlogged:\n%s", logs.String())
	}
}
