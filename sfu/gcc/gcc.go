// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

// Package gcc implements Google Congestion Control for bandwidth estimation.
//
// It is pion's (github.com/pion/interceptor v0.1.51, pkg/gcc and the
// feedback adapter of internal/cc; MIT, see LICENSE), copied because the
// per-packet half of it cannot be changed from outside and cost medcall
// more than its algorithm: for every packet sent pion's feedback adapter
// put a list element and a boxed copy in a map (60 % of the bytes the
// server allocated at N=50), and its pacer looked the writer up again under
// a lock held across the write. Here:
//
//   - the history of packets sent is an array indexed by the transport-wide
//     sequence number (feedback.go), 256 packets where pion kept 250, and a
//     packet recorded late never overwrites a newer one;
//   - AddStream returns a writer that records each packet and writes it on
//     at once: no pacer (medcall used pion's NoOpPacer), so no Pacer option
//     and no leaky-bucket pacer;
//   - RFC 8888 feedback is left out (medcall negotiates transport-cc), and
//     so are the packets of a stream without transport-cc;
//   - the acknowledgments of one feedback go into one slice;
//   - the delay controller runs on the goroutine that feeds it the
//     subscriber's RTCP, where pion's handed every feedback to two
//     goroutines of its own per connection (pion's cc interceptor binds an
//     RTCP reader per RTP sender, so several goroutines may feed it: a
//     mutex takes one feedback at a time); the received rate is taken
//     before the delay, as pion's goroutines usually did and libwebrtc
//     does.
//
// The estimator itself (arrival groups, Kalman filter, overuse detector,
// rate and loss controllers) is pion's, unchanged but for two run loops
// that became methods. TestSendSideBWEEstimatesAsPions feeds this one and
// pion's the same packets and feedback and requires the same usage and
// average loss; TestSendSideBWEAnswersWithThisFeedbacksRate checks the
// order of rate and delay. docs/mediapath.md has the measurements.
package gcc

import "time"

func clampInt(b, minVal, maxVal int) int {
	return max(minVal, min(maxVal, b))
}

func clampDuration(d, minVal, maxVal time.Duration) time.Duration {
	return time.Duration(clampInt(int(d), int(minVal), int(maxVal)))
}
