package recorder

import (
	"os"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
)

// BenchmarkFinalizeTenMinutes measures the time from the end of a
// 10-minute consultation (two participants' audio throughout, one
// participant's VP8 video from an upgrade at 4 s) to the finished, seekable
// WebM handed to the publisher: the work done after the last person leaves.
// The session's media is fed in fast on a fake clock and fully spooled
// before the clock starts.
func BenchmarkFinalizeTenMinutes(b *testing.B) {
	audio := opusPackets(b, fixture(b, "audio.ogg"))
	video := ivfFrames(b, fixture(b, "video.ivf"))
	const minutes = 10
	var longAudio, longVideo [][]byte
	for len(longAudio)*20 < minutes*60*1000 {
		longAudio = append(longAudio, audio...)
	}
	for len(longVideo)*1000/30 < (minutes*60-4)*1000 {
		longVideo = append(longVideo, video...)
	}
	for range b.N {
		b.StopTimer()
		g := newRig(b)
		s := newSession(b, g.clock)
		tap := g.rec.Open(binding)
		var pa, ca, cv sfu.TrackSink
		var keyReqs atomicCounter
		s.at(0, func() {
			pa = tap.OnTrack(audioInfo("p-7", "patient"))
			ca = tap.OnTrack(audioInfo("u-1", "clinician"))
		})
		s.sendOpus(stream{sink: &pa, rate: 48000, seq0: 1000, ts0: 5000, delay: 30 * time.Millisecond, srEvery: 5 * time.Second, srFirst: time.Second}, longAudio)
		s.sendOpus(stream{sink: &ca, rate: 48000, seq0: 20, ts0: 777777, delay: 45 * time.Millisecond, srEvery: 5 * time.Second, srFirst: time.Second}, longAudio)
		s.at(4*time.Second, func() { cv = tap.OnTrack(videoInfo("u-1", "clinician", &keyReqs.Int64)) })
		s.sendVP8(stream{sink: &cv, rate: 90000, seq0: 65000, ts0: 123, sendStart: 4 * time.Second, delay: 45 * time.Millisecond, srEvery: 5 * time.Second}, longVideo, 30)
		s.run()
		// Wait until every queued packet is in the spool, as it is in a live call.
		last, stable := int64(-1), 0
		for stable < 5 {
			n := g.rec.Stats().SpoolBytes
			if n == last {
				stable++
			} else {
				stable, last = 0, n
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.StartTimer()
		start := time.Now()
		rec := g.finish(b, tap)
		took := time.Since(start)
		b.StopTimer()
		if rec.Failed || g.rec.Stats().QueueDrops != 0 {
			b.Fatalf("recording failed=%v drops=%d", rec.Failed, g.rec.Stats().QueueDrops)
		}
		for _, tr := range rec.Tracks {
			if tr.LastMS < (minutes*60-1)*1000 {
				b.Fatalf("track %s ends at %d ms, not after %d minutes", tr.Name, tr.LastMS, minutes)
			}
		}
		st, err := os.Stat(g.pub.objectPath(rec))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(took.Seconds(), "s-to-webm")
		b.ReportMetric(float64(st.Size())/1e6, "MB")
		b.ReportMetric(float64(last)/1e6, "spool-MB")
		b.StartTimer()
	}
}
