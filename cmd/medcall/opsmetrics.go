package main

import (
	"syscall"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/signaling"
)

// watchOps adds what the alert rules need beyond the other series: the
// free space of the data directory's filesystem (spool and outbox live
// there), and every known label value of the alerting counters at 0, so a
// rule sees "no failures yet" rather than no series at all.
func (m *metrics) watchOps(data string) {
	statfs := func(f func(s *syscall.Statfs_t) uint64) func() float64 {
		return func() float64 {
			var s syscall.Statfs_t
			if err := syscall.Statfs(data, &s); err != nil {
				return 0
			}
			return float64(f(&s)) * float64(s.Bsize)
		}
	}
	gaugeFunc(m.reg, "data_free_bytes", "Bytes available to medcall on the data directory's filesystem (spool, outbox, webhook queue).", statfs(func(s *syscall.Statfs_t) uint64 { return s.Bavail }))
	gaugeFunc(m.reg, "data_size_bytes", "Size in bytes of the data directory's filesystem.", statfs(func(s *syscall.Statfs_t) uint64 { return s.Blocks }))
	for _, r := range []string{recorder.AlertBadSignature, recorder.AlertUnknownKey, recorder.AlertExpiredKey, recorder.AlertPayloadType, recorder.AlertSubjectMismatch, recorder.AlertDigestMismatch,
		recorder.AlertPatientMismatch, recorder.AlertNoManifest, recorder.AlertMalformed} {
		m.verifyFailures.WithLabelValues(r)
	}
	for _, o := range []string{"ok", "refused", "error"} {
		m.replay.WithLabelValues(o)
	}
	for _, c := range []string{signaling.CodeTokenMissing, signaling.CodeTokenInvalid, signaling.CodeTokenExpired, signaling.CodeBadID, signaling.CodeForbidden} {
		m.tokensRefused.WithLabelValues(c)
	}
}
