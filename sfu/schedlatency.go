package sfu

import (
	"math"
	"runtime/metrics"
	"time"
)

// When the machine cannot give the server the CPU it needs, every packet
// waits at each hand-off between the server's goroutines (pion's receive
// path has four), audio and video alike, and the kernel queues what the
// server has not read yet: 16 MiB of socket buffer held up to ~1 s of
// media at N=150 on two cores (measured; docs/performance.md). The first
// sign is delay, not loss. The Go scheduler measures it directly: how long
// runnable goroutines wait for a CPU (runtime/metrics
// /sched/latencies:seconds). watchSchedLatency publishes its 99th
// percentile over each schedSample as Metrics.SchedLatencyP99.
const schedSample = 250 * time.Millisecond

// watchSchedLatency samples the scheduler every schedSample until stop
// closes.
func watchSchedLatency(stop <-chan struct{}, m *Metrics) {
	sample := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return // not measured by this runtime
	}
	prev := cloneCounts(sample[0].Value.Float64Histogram())
	tick := time.NewTicker(schedSample)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		metrics.Read(sample)
		h := sample[0].Value.Float64Histogram()
		m.SchedLatencyP99.Store(int64(quantileSince(h, prev, 0.99)))
		prev = cloneCounts(h)
	}
}

func cloneCounts(h *metrics.Float64Histogram) *metrics.Float64Histogram {
	return &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}
}

// quantileSince is the q-quantile of what h counted since prev: the upper
// bound of the bucket it falls in (the lower bound of an open last bucket);
// 0 when nothing was counted.
func quantileSince(h, prev *metrics.Float64Histogram, q float64) time.Duration {
	var total uint64
	for i, c := range h.Counts {
		total += c - prev.Counts[i]
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range h.Counts {
		if seen += c - prev.Counts[i]; seen >= want {
			up := h.Buckets[i+1]
			if math.IsInf(up, 1) {
				up = h.Buckets[i]
			}
			return time.Duration(up * float64(time.Second))
		}
	}
	return 0
}
