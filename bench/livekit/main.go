// Command livekit-bench runs medcall bench's consultation script against a
// LiveKit server, for the side-by-side issue 16 asks for (README,
// Performance): N one-to-one rooms started at --rate per second, each
// participant sending the same Opus and VP8 fixtures as medcall bench (in a
// loop at real-time pace, loaded by the client's own fixture package and
// packetized alike) from the start and, after
// --upgrade-after, video too; every room ends --duration after it started.
// It counts what each participant receives of the other by RTP sequence
// number, as medcall's Go client does (every packet, each SSRC from its
// first sequence number to its highest), and reads the server's CPU from
// /proc (--pid), also over the steady window medcall bench uses when the
// script has one (every room joined and upgraded, none ended). Unlike
// medcall's client, its senders do not jump back to a keyframe when asked
// for one.
//
// It is a module of its own so medcall does not depend on LiveKit's SDK:
//
//	cd bench/livekit && go run . --n 50 --pid $(pgrep -f livekit-server)
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/medcall/medcall/signaling/client/fixture"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/auth"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// pump sends c on track at real-time pace, looping, until ctx ends.
func pump(ctx context.Context, c *fixture.Clip, track *webrtc.TrackLocalStaticRTP, p rtp.Payloader, rate uint32, sent *atomic.Uint64) {
	pkz := rtp.NewPacketizer(1200, 0, 0, p, rtp.NewRandomSequencer(), rate)
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for i := 0; ; i++ {
		for _, pkt := range pkz.Packetize(c.Frames[i%len(c.Frames)].Data, c.Samples) {
			if track.WriteRTP(pkt) == nil {
				sent.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// counter is what one participant received of the other's track of one
// kind, counted as medcall's Go client counts (signaling/client/stats.go):
// expected runs from each SSRC's first sequence number to its highest
// (a new SSRC starts a new sequence space), received counts every packet,
// and the loss is expected minus received, at least 0 (bench/fairness.go).
type counter struct {
	mu            sync.Mutex
	ssrc          uint32
	started       bool
	base, highest uint64 // extended sequence numbers of this SSRC
	before        uint64 // expected on earlier SSRCs
	received      uint64
}

// delivered counts the packets received, for the steady window.
var delivered atomic.Uint64

func (c *counter) add(ssrc uint32, seq uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || ssrc != c.ssrc {
		if c.started {
			c.before += c.highest - c.base + 1
		}
		c.started, c.ssrc, c.base, c.highest = true, ssrc, 1<<32+uint64(seq), 1<<32+uint64(seq)
	}
	// Extend seq to the cycle nearest the highest so far.
	ext := uint64(int64(c.highest) + int64(int16(seq-uint16(c.highest))))
	c.highest = max(c.highest, ext)
	c.received++
	delivered.Add(1)
}

func (c *counter) result() (expected, received uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return 0, 0
	}
	return c.before + c.highest - c.base + 1, c.received
}

type totals struct {
	mu                 sync.Mutex
	expected, received [2]uint64 // audio, video; received at most expected per stream
	over1              int       // rooms over 1 % loss
	empty              int       // rooms in which nothing was received (not in over1, as in medcall bench)
	rooms, failed      int
}

func main() {
	url := flag.String("url", "ws://127.0.0.1:7880", "LiveKit server")
	key := flag.String("key", "devkey", "API key (livekit-server --dev)")
	secret := flag.String("secret", "secret", "API secret (livekit-server --dev)")
	n := flag.Int("n", 50, "rooms")
	rate := flag.Float64("rate", 5, "rooms started per second")
	dur := flag.Duration("duration", 30*time.Second, "each room's length")
	upg := flag.Duration("upgrade-after", 5*time.Second, "when both participants add video")
	audio := flag.String("audio", "../../testdata/audio.ogg", "Opus in Ogg, one packet per page")
	video := flag.String("video", "../../testdata/video.ivf", "VP8 in IVF")
	pid := flag.Int("pid", 0, "the server's process id, for its CPU")
	flag.Parse()
	ac, err := fixture.LoadOgg(*audio)
	if err != nil {
		log.Fatal(err)
	}
	vc, err := fixture.LoadIVF(*video)
	if err != nil {
		log.Fatal(err)
	}
	var tot totals
	var sent [2]atomic.Uint64 // packets written: audio, video
	cpu0, self0, rss0 := procCPU(*pid), procCPU(os.Getpid()), procRSS(*pid)
	t0 := time.Now()
	// The steady window, as medcall bench's: every room joined and
	// upgraded (2 s allowed for it), none left yet.
	last := time.Duration(float64(*n-1) / *rate * float64(time.Second))
	from, to := t0.Add(last+*upg+2*time.Second), t0.Add(*dur)
	steady := make(chan [2]sample, 1)
	go func() { steady <- window(*pid, from, to) }()
	var wg sync.WaitGroup
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(float64(i) / *rate * float64(time.Second)))
			room(i, *url, *key, *secret, *dur, *upg, ac, vc, &tot, &sent)
		}()
	}
	wg.Wait()
	cpu, self := procCPU(*pid)-cpu0, procCPU(os.Getpid())-self0
	wall := time.Since(t0)
	rx := tot.received[0] + tot.received[1]
	fmt.Printf("rooms: planned %d, ran %d, failed %d; %v\n", *n, tot.rooms, tot.failed, wall.Round(time.Second))
	for k, kind := range []string{"audio", "video"} {
		e, r := tot.expected[k], tot.received[k]
		fmt.Printf("  %-6s expected %8d received %8d lost %6d  %.3f %%  (sent %d)\n", kind, e, r, e-r, 100*float64(e-r)/float64(max(e, 1)), sent[k].Load())
	}
	fmt.Printf("rooms over 1 %% loss: %d of %d (and %d that received nothing)\n", tot.over1, tot.rooms-tot.empty, tot.empty)
	if w := <-steady; *pid != 0 && w[1].at.After(w[0].at) {
		secs := w[1].at.Sub(w[0].at).Seconds()
		cpuW, rxW := (w[1].cpu - w[0].cpu).Seconds(), w[1].rx-w[0].rx
		fmt.Printf("steady window %.1f s: server %.2f cores, %.0f packets delivered/s, %.1f µs per delivered packet\n",
			secs, cpuW/secs, float64(rxW)/secs, cpuW*1e6/float64(max(rxW, 1)))
		// As medcall bench: RSS at load less RSS before the first join, per consultation.
		fmt.Printf("RSS per room %.0f KiB (%.1f MiB at the window's end, %.1f MiB before the first join)\n",
			(float64(w[1].rss)-float64(rss0))/float64(*n)/1024, float64(w[1].rss)/(1<<20), float64(rss0)/(1<<20))
	} else if *pid != 0 {
		fmt.Println("steady window: none (every room ended before the last was upgraded)")
	}
	if *pid != 0 {
		fmt.Printf("server CPU %.2f s, %.2f cores; %.1f µs per delivered packet (%d delivered, %d sent); this harness's CPU %.2f s\n",
			cpu.Seconds(), cpu.Seconds()/wall.Seconds(), float64(cpu.Microseconds())/float64(max(rx, 1)), rx, sent[0].Load()+sent[1].Load(), self.Seconds())
	}
}

// room runs one consultation: two participants, audio from the start,
// video after upg, leaving at dur.
func room(i int, url, key, secret string, dur, upg time.Duration, ac, vc *fixture.Clip, tot *totals, sent *[2]atomic.Uint64) {
	name := fmt.Sprintf("c-%d", i)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	type side struct {
		room *lksdk.Room
		got  [2]*counter // what this one received: audio, video
	}
	var sides [2]*side
	for s := range sides {
		sd := &side{got: [2]*counter{{}, {}}}
		cb := lksdk.NewRoomCallback()
		cb.ParticipantCallback.OnTrackSubscribed = func(t *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
			c := sd.got[0]
			if t.Kind() == webrtc.RTPCodecTypeVideo {
				c = sd.got[1]
			}
			go func() {
				for {
					p, _, err := t.ReadRTP()
					if err != nil {
						return
					}
					c.add(p.SSRC, p.SequenceNumber)
				}
			}()
		}
		at := auth.NewAccessToken(key, secret).SetIdentity(fmt.Sprintf("%s-%d", name, s)).
			SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: name}).SetValidFor(time.Hour)
		tok, err := at.ToJWT()
		if err == nil {
			sd.room, err = lksdk.ConnectToRoomWithToken(url, tok, cb, lksdk.WithAutoSubscribe(true))
		}
		if err != nil {
			log.Printf("%s: join: %v", name, err)
			tot.mu.Lock()
			tot.failed++
			tot.mu.Unlock()
			for _, o := range sides[:s] {
				o.room.Disconnect()
			}
			return
		}
		sides[s] = sd
	}
	publish := func(sd *side, kind string, c *fixture.Clip, p rtp.Payloader, rate uint32, mime string, sent *atomic.Uint64) {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: rate}, kind, sd.room.LocalParticipant.Identity())
		if err == nil {
			_, err = sd.room.LocalParticipant.PublishTrack(tr, &lksdk.TrackPublicationOptions{Name: kind})
		}
		if err != nil {
			log.Printf("%s: publish %s: %v", name, kind, err)
			return
		}
		go pump(ctx, c, tr, p, rate, sent)
	}
	for _, sd := range sides {
		publish(sd, "audio", ac, &codecs.OpusPayloader{}, 48000, webrtc.MimeTypeOpus, &sent[0])
	}
	select {
	case <-ctx.Done():
	case <-time.After(upg):
		for _, sd := range sides {
			publish(sd, "video", vc, &codecs.VP8Payloader{EnablePictureID: true}, 90000, webrtc.MimeTypeVP8, &sent[1])
		}
		<-ctx.Done()
	}
	tot.mu.Lock()
	defer tot.mu.Unlock()
	tot.rooms++
	var e, r uint64
	for _, sd := range sides {
		sd.room.Disconnect()
		for k, c := range sd.got {
			ke, kr := c.result()
			kr = min(kr, ke)
			tot.expected[k] += ke
			tot.received[k] += kr
			e, r = e+ke, r+kr
		}
	}
	switch {
	case e == 0:
		tot.empty++
	case float64(e-r) > 0.01*float64(e):
		tot.over1++
	}
}

type sample struct {
	at  time.Time
	cpu time.Duration
	rx  uint64
	rss uint64 // bytes
}

// window samples the server's CPU and the packets delivered at from and to.
func window(pid int, from, to time.Time) [2]sample {
	take := func(t time.Time) sample {
		time.Sleep(time.Until(t))
		return sample{time.Now(), procCPU(pid), delivered.Load(), procRSS(pid)}
	}
	if !to.After(from) {
		return [2]sample{}
	}
	a := take(from)
	return [2]sample{a, take(to)}
}

// procCPU is a process's user and system CPU time from /proc.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	var utime, stime int64
	// Fields 14 and 15 (after the command, which may hold spaces, in parentheses).
	i := len(b) - 1
	for i > 0 && b[i] != ')' {
		i--
	}
	var skip string
	if _, err := fmt.Sscanf(string(b[i+2:]), "%s %s %s %s %s %s %s %s %s %s %s %d %d", &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &utime, &stime); err != nil {
		log.Fatal(err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ 100
}

// procRSS is a process's resident set from /proc, in bytes.
func procRSS(pid int) uint64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		log.Fatal(err)
	}
	var size, resident uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &size, &resident); err != nil {
		log.Fatal(err)
	}
	return resident * uint64(os.Getpagesize())
}
