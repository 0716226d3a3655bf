package bench

import (
	"math"
	"slices"
	"time"
)

// Summary is a distribution in milliseconds: nearest-rank percentiles (the
// p-th percentile is the smallest value with at least p% of the samples at
// or below it).
type Summary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize summarizes durations; it does not change ds.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Summary{
		Count: len(s),
		Mean:  ms(sum / time.Duration(len(s))),
		P50:   ms(Percentile(s, 50)),
		P95:   ms(Percentile(s, 95)),
		P99:   ms(Percentile(s, 99)),
		Max:   ms(s[len(s)-1]),
	}
}

// Percentile is the nearest-rank p-th percentile of sorted (0 < p <= 100).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}
