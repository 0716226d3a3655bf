package main

import (
	"github.com/prometheus/client_golang/prometheus"
)

// watchRate adds the rate-control series: each subscriber downlink's
// estimate and each video bitrate asked of a publisher, as observed every
// rate-control tick (sfu/ratecontrol.go), by direction only.
func (m *metrics) watchRate() {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "medcall", Name: "bandwidth_estimate_bits_per_second",
		Help:    "Rate control's observations by direction: down (a subscriber downlink's estimate, when constrained) and up_target (the video bitrate asked of a publisher).",
		Buckets: prometheus.ExponentialBuckets(50_000, 1.5, 12),
	}, []string{"direction"})
	m.reg.MustRegister(h)
	m.sfu.OnBandwidthEstimate = func(direction string, bps uint64) { h.WithLabelValues(direction).Observe(float64(bps)) }
}
