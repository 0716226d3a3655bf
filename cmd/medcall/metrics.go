package main

import (
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/sfu"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is every medcall_* series. Label sets are bounded: kinds, paths,
// outcomes and reasons, never a participant or consultation.
type metrics struct {
	reg            *prometheus.Registry
	sfu            *sfu.Metrics
	joins          *prometheus.CounterVec
	tokensRefused  *prometheus.CounterVec
	upgrades       *prometheus.CounterVec
	upgradeLatency *prometheus.HistogramVec
	uploadDuration prometheus.Histogram
	uploadFailures prometheus.Counter
	quarantined    prometheus.Counter
	manifests      prometheus.Counter
	verifyFailures *prometheus.CounterVec
	replay         *prometheus.CounterVec
	audit          *prometheus.CounterVec
}

// queueDelayBuckets bound the server's delay histograms (s): a healthy
// server in the lowest, an overloaded one up to seconds.
var queueDelayBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func counterFunc(reg *prometheus.Registry, name, help string, labels prometheus.Labels, f func() float64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "medcall", Name: name, Help: help, ConstLabels: labels}, f))
}

func gaugeFunc(reg *prometheus.Registry, name, help string, f func() float64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "medcall", Name: name, Help: help}, f))
}

func u64(a *atomic.Uint64) func() float64 { return func() float64 { return float64(a.Load()) } }

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	// The Go collector's defaults plus the scheduler's latency histogram
	// (go_sched_latencies_seconds): how long runnable goroutines waited for
	// a CPU, the first sign that the server is short of one.
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{reg: reg, sfu: &sfu.Metrics{}}
	f := prometheus.WrapRegistererWithPrefix("medcall_", reg)
	newCV := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		f.MustRegister(c)
		return c
	}
	m.joins = newCV("joins_total", "Join attempts by outcome (ok, or the refusal's error code).", "outcome")
	m.tokensRefused = newCV("tokens_refused_total", "Join tokens refused, by reason (error code).", "reason")
	m.upgrades = newCV("upgrades_total", "Video upgrades by path and outcome (requested; completed = first keyframe forwarded).", "path", "outcome")
	m.upgradeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "upgrade_latency_seconds",
		Help:    "Time from an upgrade (notice, re-offer or first video RTP) to the first keyframe forwarded, by path.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"path"})
	f.MustRegister(m.upgradeLatency)
	queueDelay := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "udp_queue_delay_seconds",
		Help:    "How long each datagram waited in the UDP media port's kernel queue before the server read it (--udp-port bound to one address, Linux on amd64 or arm64); an idle reader sleeps up to --udp-coalesce (and Go's timer up to 1 ms more) to read in batches, and that wait is in it too.",
		Buckets: queueDelayBuckets,
	})
	f.MustRegister(queueDelay)
	m.sfu.OnUDPQueueDelay = func(d time.Duration) { queueDelay.Observe(d.Seconds()) }
	forwardDelay := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "forward_delay_seconds",
		Help:    "How long each RTP packet the own receive path took spent in the server, by kind: from the kernel's receive time to the end of its fan-out (--own-receive-path with --udp-port bound to one address, Linux on amd64 or arm64). Under overload audio is forwarded before video.",
		Buckets: queueDelayBuckets,
	}, []string{"kind"})
	f.MustRegister(forwardDelay)
	fwdAudio, fwdVideo := forwardDelay.WithLabelValues("audio"), forwardDelay.WithLabelValues("video")
	m.sfu.OnForwardDelay = func(k sfu.Kind, d time.Duration) {
		if k == sfu.KindVideo {
			fwdVideo.Observe(d.Seconds())
		} else {
			fwdAudio.Observe(d.Seconds())
		}
	}
	m.uploadDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "upload_duration_seconds",
		Help:    "Time from a finished recording to it and its manifest verified in the store.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	f.MustRegister(m.uploadDuration)
	m.uploadFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "upload_failures_total", Help: "Failed upload attempts, each one from the first (including those the store retries)."})
	m.quarantined = prometheus.NewCounter(prometheus.CounterOpts{Name: "upload_quarantined_total", Help: "Outbox entries that can never be stored, moved to the outbox quarantine (an alert)."})
	f.MustRegister(m.quarantined)
	m.manifests = prometheus.NewCounter(prometheus.CounterOpts{Name: "manifests_signed_total", Help: "Recording manifests signed."})
	f.MustRegister(m.uploadFailures, m.manifests)
	m.verifyFailures = newCV("manifest_verification_failures_total", "Manifests or objects that failed verification at replay (an alert: the recording is hidden), by reason.", "reason")
	m.replay = newCV("replay_requests_total", "Replay API requests by outcome.", "outcome")
	m.audit = newCV("audit_events_total", "Audit log lines written, by action and outcome.", "action", "outcome")

	s := m.sfu
	for i, kind := range []string{"audio", "video"} {
		k := prometheus.Labels{"kind": kind}
		counterFunc(reg, "tracks_published_total", "Published tracks that started flowing, by kind.", k, u64(&s.TracksPublished[i]))
		counterFunc(reg, "rtp_packets_received_total", "RTP packets received from publishers, by kind.", k, u64(&s.PacketsIn[i]))
		counterFunc(reg, "rtp_bytes_received_total", "RTP bytes received from publishers, by kind.", k, u64(&s.BytesIn[i]))
		counterFunc(reg, "rtp_packets_forwarded_total", "RTP packets forwarded to subscribers, by kind.", k, u64(&s.PacketsOut[i]))
		counterFunc(reg, "rtp_bytes_forwarded_total", "RTP bytes forwarded to subscribers, by kind.", k, u64(&s.BytesOut[i]))
	}
	for reason, c := range map[string]*atomic.Uint64{
		"garbage": &s.DroppedGarbage, "wait_keyframe": &s.DroppedWaitKeyframe,
		"muted": &s.DroppedMuted, "write_error": &s.DroppedWriteError,
		"own_path_queue_full": &s.OwnPathDropped, "own_path_decrypt_error": &s.OwnPathDecryptErrors,
		"own_path_duplicate": &s.OwnPathDuplicates,
	} {
		counterFunc(reg, "packets_dropped_total", "Packets not forwarded, by reason: garbage (unparseable), wait_keyframe (a subscriber waits for a keyframe), muted (the publisher said it was off), write_error (the subscriber's transport refused it), and the own receive path's own_path_queue_full, own_path_decrypt_error (did not authenticate) and own_path_duplicate (seen before, from either path).", prometheus.Labels{"reason": reason}, u64(c))
	}
	counterFunc(reg, "own_path_packets_total", "RTP packets the own receive path took past pion's receive goroutines (--own-receive-path), to forward on the UDP port's reader or queued for the forwarding pool (audio first) or their stream's goroutine; those forwarded are counted in rtp_packets_received_total too. 0 when the path is off.", nil, u64(&s.OwnPathPackets))
	counterFunc(reg, "own_path_queued_packets_total", "RTP packets of own_path_packets_total queued for the forwarding pool (audio first) or their stream's goroutine, not forwarded on the UDP port's reader: the reader was behind (a datagram had waited over 1 ms since it arrived), packets of the stream were still waiting, or a subscriber of the stream is not (yet) sent to on the own send path.", nil, u64(&s.OwnPathQueued))
	counterFunc(reg, "own_path_rtcp_packets_total", "Subscribers' RTCP datagrams the UDP port's reader decrypted and read itself, past pion's receive goroutines (the own send path's connections, --own-rtcp-path with --own-receive-path). 0 when that is off (the default).", nil, u64(&s.OwnPathRTCP))
	counterFunc(reg, "own_path_sent_packets_total", "RTP packets the own send path encrypted and sent on the UDP port itself, past pion's SRTP session and ICE write path (--own-send-path): forwarded packets (rtp_packets_forwarded_total) and retransmissions alike. 0 when the path is off.", nil, u64(&s.OwnPathSent))
	counterFunc(reg, "rtcp_nacks_sent_total", "NACKs sent to publishers.", nil, u64(&s.NACKSent))
	counterFunc(reg, "rtcp_nacks_received_total", "NACKs received from subscribers.", nil, u64(&s.NACKReceived))
	counterFunc(reg, "nack_packets_total", "Packets subscribers asked to be resent.", nil, u64(&s.NACKedPackets))
	counterFunc(reg, "nack_packets_stale_total", "Packets asked for too late to be of use, refused.", nil, u64(&s.NACKStale))
	counterFunc(reg, "retransmissions_total", "Packets resent to subscribers.", nil, u64(&s.Retransmissions))
	counterFunc(reg, "retransmissions_on_feedback_total", "Packets resent to subscribers (counted in retransmissions_total too) because their transport-cc feedback reported the packet, or its last resend, lost, with no resend of it started since.", nil, u64(&s.FeedbackResends))
	counterFunc(reg, "retransmitted_bytes_total", "Bytes resent to subscribers.", nil, u64(&s.RetransmittedBytes))
	counterFunc(reg, "rtcp_plis_sent_total", "PLIs sent to publishers.", nil, u64(&s.PLISent))
	counterFunc(reg, "rtcp_plis_received_total", "PLIs received from subscribers.", nil, u64(&s.PLIReceived))
	counterFunc(reg, "rtcp_firs_received_total", "FIRs received from subscribers.", nil, u64(&s.FIRReceived))
	for r := range sfu.NumKeyframeReasons {
		reason := prometheus.Labels{"reason": r.String()}
		counterFunc(reg, "keyframe_requests_total", "Keyframe requests made of publishers' video, by reason; all pass one throttle per track, so one PLI (or a keyframe already on its way) answers several (rtcp_plis_sent_total counts the PLIs).", reason, u64(&s.KeyframeRequests[r]))
		counterFunc(reg, "keyframe_requests_throttled_total", "Keyframe requests that sent no PLI at once: one already asked for, or the next, answers them.", reason, u64(&s.KeyframeRequestsThrottled[r]))
	}
	m.watchRate()
	s.OnUpgradeStart = func(path string) { m.upgrades.WithLabelValues(path, "requested").Inc() }
	s.OnUpgrade = func(path string, d time.Duration) {
		m.upgrades.WithLabelValues(path, "completed").Inc()
		m.upgradeLatency.WithLabelValues(path).Observe(d.Seconds())
	}
	return m
}

// watchSFU adds the gauges read from the running SFU.
func (m *metrics) watchSFU(s *sfu.SFU) {
	gaugeFunc(m.reg, "consultations_active", "Consultations with at least one participant.", func() float64 { return float64(s.Stats().Consultations) })
	gaugeFunc(m.reg, "participants_active", "Participants connected.", func() float64 { return float64(s.Stats().Participants) })
	if n := s.MaxConsultations(); n > 0 {
		gaugeFunc(m.reg, "consultations_max", "The --max-consultations cap: joins that would start one more consultation are refused with server_full.", func() float64 { return float64(n) })
	}
	if _, ok := s.UDPReceiveDrops(); ok {
		counterFunc(m.reg, "udp_receive_drops_total", "Datagrams the kernel dropped on the UDP media port, its receive buffer full (every consultation's media alike).", nil,
			func() float64 { n, _ := s.UDPReceiveDrops(); return float64(n) })
	}
}

// watchCPUWait adds the series of --admit-cpu-wait.
func (m *metrics) watchCPUWait(w *cpuWait) {
	gaugeFunc(m.reg, "admission_cpu_starved", "1 while --admit-cpu-wait refuses joins that would start a consultation: the server's goroutines waited too long for a CPU over the last 10 s.", func() float64 {
		if w.Busy() {
			return 1
		}
		return 0
	})
}

// watchRecording adds the recorder's and uploader's series.
func (m *metrics) watchRecording(r *recording) {
	st := func(f func(recorder.Stats) float64) func() float64 {
		return func() float64 { return f(r.recorder.Stats()) }
	}
	gaugeFunc(m.reg, "recordings_active", "Recordings in progress.", st(func(s recorder.Stats) float64 { return float64(s.Active) }))
	counterFunc(m.reg, "recordings_finalized_total", "Recordings finalized and handed to the uploader.", nil, st(func(s recorder.Stats) float64 { return float64(s.Completed) }))
	counterFunc(m.reg, "recordings_failed_total", "Recordings that failed (never reported as complete).", nil, st(func(s recorder.Stats) float64 { return float64(s.Failed) }))
	counterFunc(m.reg, "recordings_partial_total", "Recordings stored as partial: their spool could not be written (e.g. disk full), what was spooled is kept.", nil, st(func(s recorder.Stats) float64 { return float64(s.Partial) }))
	counterFunc(m.reg, "recordings_recovered_total", "Recordings finalized from an orphaned spool after a crash.", nil, st(func(s recorder.Stats) float64 { return float64(s.Recovered) }))
	counterFunc(m.reg, "recorder_queue_overflows_total", "Packets dropped because a recorder track queue was full.", nil, st(func(s recorder.Stats) float64 { return float64(s.QueueDrops) }))
	gaugeFunc(m.reg, "spool_bytes", "Bytes in the recording spool directory.", st(func(s recorder.Stats) float64 { return float64(s.SpoolBytes) }))
	gaugeFunc(m.reg, "uploads_pending", "Finished recordings not yet safely stored.", func() float64 { return float64(r.uploader.Pending()) })
	gaugeFunc(m.reg, "outbox_quarantined", "Recordings in the outbox quarantine, waiting for an operator.", func() float64 { return float64(r.uploader.Quarantined()) })
}

// uploadObserver feeds the upload series.
func (m *metrics) uploadObserver() recorder.UploadObserver {
	return recorder.UploadObserver{
		Uploaded: func(d time.Duration) { m.uploadDuration.Observe(d.Seconds()) },
		Failed:   m.uploadFailures.Inc,
		Signed:   m.manifests.Inc,

		Quarantined: m.quarantined.Inc,
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
