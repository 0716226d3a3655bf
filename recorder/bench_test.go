package recorder

import (
	"context"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/medcall/medcall/sfu"
)

// BenchmarkRecorderWriteRTP measures what a recorded track costs the SFU's
// forwarding goroutine per packet (writeRTP: copy into the queue, with the
// track goroutine and spool running behind it; a tight loop outruns them,
// hence drops), the live pipeline per packet (spooled: queue, reorder,
// depacketize, timeline, spool) and the whole of it (finalized: plus
// writing the WebM at the end).
func BenchmarkRecorderWriteRTP(b *testing.B) {
	audio := opusPackets(b, fixture(b, "audio.ogg"))
	var video []*rtp.Packet
	pz := rtp.NewPacketizer(1200, 96, 2, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	for _, f := range ivfFrames(b, fixture(b, "video.ivf")) {
		video = append(video, pz.Packetize(f, 3000)...)
	}
	audioPkts := make([]*rtp.Packet, len(audio))
	for i, p := range audio {
		audioPkts[i] = &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111}, Payload: p}
	}
	for _, c := range []struct {
		name string
		info sfu.TrackInfo
		pkts []*rtp.Packet
		rate uint32 // RTP timestamp step per packet cycle
	}{
		{"opus", audioInfo("p-7", "patient"), audioPkts, 960},
		{"vp8", sfu.TrackInfo{Participant: "p-7", Role: "patient", Kind: sfu.KindVideo, MimeType: "video/VP8", ClockRate: 90000}, video, 0},
	} {
		for _, mode := range []string{"writeRTP", "spooled", "finalized"} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				queue := 1024
				if mode != "writeRTP" {
					queue = b.N + 1 // nothing dropped: every packet goes all the way
				}
				r, err := New(Options{SpoolDir: b.TempDir(), Publisher: LocalPublisher{Dir: b.TempDir()}, QueueSize: queue, Logger: discardLogger()})
				if err != nil {
					b.Fatal(err)
				}
				tap := r.Open(binding)
				sink := tap.OnTrack(c.info)
				var bytes int64
				for _, p := range c.pkts {
					bytes += int64(len(p.Payload))
				}
				b.SetBytes(bytes / int64(len(c.pkts)))
				b.ReportAllocs()
				pkt := &rtp.Packet{}
				b.ResetTimer()
				for i := range b.N {
					src := c.pkts[i%len(c.pkts)]
					*pkt = *src
					cycle := uint32(i / len(c.pkts))
					pkt.SequenceNumber = uint16(i)
					if c.rate != 0 {
						pkt.Timestamp = uint32(i) * c.rate
					} else {
						pkt.Timestamp = src.Timestamp + cycle*180*3000
					}
					sink.WriteRTP(pkt)
				}
				switch mode {
				case "spooled":
					sink.Close()
					<-tap.(*recording).tracks[0].done
				case "finalized":
					tap.Close()
					if err := r.Wait(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				tap.Close()
				r.Wait(context.Background())
				b.ReportMetric(float64(r.Stats().QueueDrops)/float64(b.N), "drops/op")
			})
		}
	}
}
