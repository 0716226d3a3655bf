package signaling_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
)

// BenchmarkUpgradeLatency measures, for each upgrade path, the time from the
// patient's upgrade action (the call to Upgrade) to the first VP8 keyframe
// arriving at the clinician's pion peer, both on loopback in this process
// (one clock). Each upgrade is a fresh consultation, as in a real call: audio
// flowing both ways first, then the upgrade. Run with -benchtime=60x for 60
// upgrades per path; it reports the median, p95 and max.
func BenchmarkUpgradeLatency(b *testing.B) {
	for _, path := range []string{signaling.PathPrenegotiated, signaling.PathRenegotiate} {
		b.Run(path, func(b *testing.B) {
			e := newEnv(b, sfu.Config{})
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				ctx := ctxT(b, 30*time.Second)
				pid, cid := fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)
				pat := e.dial(ctx, e.patient(pid, cid), path == signaling.PathPrenegotiated)
				doc := e.dial(ctx, e.clinician("d"+pid, pid, cid), true)
				if _, err := doc.WaitReceived(ctx, pid, "audio", atLeast(10)); err != nil {
					b.Fatal(err)
				}
				if _, err := pat.WaitReceived(ctx, "d"+pid, "audio", atLeast(10)); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := pat.Upgrade(ctx, path); err != nil {
					b.Fatal(err)
				}
				st, err := doc.WaitReceived(ctx, pid, "video", hasKeyframe)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, st.FirstKeyframe.Sub(t0))
				pat.Close()
				doc.Close()
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.95), "p95-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
