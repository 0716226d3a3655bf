package recorder

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/medcall/medcall/sfu"
)

// This file holds the test harness: fixtures read into RTP packets, a fake
// clock, and a scheduler that delivers packets, sender reports and events
// to a tap in arrival order, stamping each with its arrival time.

func fixture(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("..", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return p
}

// opusPackets splits an Ogg Opus file into its audio packets (RFC 7845),
// skipping the OpusHead and OpusTags packets. Pages may hold several packets.
func opusPackets(t testing.TB, path string) [][]byte {
	t.Helper()
	d, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	var cur []byte
	for i := 0; i < len(d); {
		if !bytes.Equal(d[i:i+4], []byte("OggS")) {
			t.Fatalf("%s: bad page at %d", path, i)
		}
		ns := int(d[i+26])
		segs := d[i+27 : i+27+ns]
		off := i + 27 + ns
		for _, s := range segs {
			cur = append(cur, d[off:off+int(s)]...)
			off += int(s)
			if s < 255 {
				pkts = append(pkts, cur)
				cur = nil
			}
		}
		i = off
	}
	if len(pkts) < 2 || !bytes.HasPrefix(pkts[0], []byte("OpusHead")) || !bytes.HasPrefix(pkts[1], []byte("OpusTags")) {
		t.Fatalf("%s: not Ogg Opus", path)
	}
	return pkts[2:]
}

// ivfFrames reads the frames of an IVF file.
func ivfFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
}

// fakeClock is the recorder's injected clock: the scheduler sets it to each
// delivery's arrival time, so a 10 s session runs in well under a second.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// delivery is one thing reaching the tap at a given arrival offset.
type delivery struct {
	at  time.Duration
	ord int // tie-break: scheduling order
	do  func()
}

// session schedules what a consultation sends and plays it into a tap.
type session struct {
	t      testing.TB
	clock  *fakeClock
	start  time.Time
	ntpOff time.Duration // sender NTP clock minus our clock
	list   []delivery
}

func newSession(t testing.TB, clock *fakeClock) *session {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock.Set(start)
	return &session{t: t, clock: clock, start: start, ntpOff: 3*time.Hour + 17*time.Millisecond}
}

func (s *session) at(d time.Duration, f func()) {
	s.list = append(s.list, delivery{at: d, ord: len(s.list), do: f})
}

// run delivers everything in arrival order.
func (s *session) run() {
	sort.SliceStable(s.list, func(i, j int) bool { return s.list[i].at < s.list[j].at })
	for _, d := range s.list {
		s.clock.Set(s.start.Add(d.at))
		d.do()
	}
	s.list = nil
}

func ntpTime(t time.Time) uint64 {
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := (uint64(ns%1e9) << 32) / 1e9
	return sec<<32 | frac
}

// stream describes one RTP stream sent into a sink.
type stream struct {
	sink      *sfu.TrackSink // read at delivery time: OnTrack may run later in the session
	rate      uint32
	seq0      uint16
	ts0       uint32
	sendStart time.Duration // send time of the first packet
	delay     time.Duration // network delay to the SFU
	srEvery   time.Duration // sender report interval; 0: none
	srFirst   time.Duration // send time of the first report, relative to sendStart
	lose      func(i int) bool
	swap      func(i int) bool // deliver packet i after packet i+1
}

// sendOpus schedules Opus packets, one every 20 ms, and returns how many
// were sent (not lost).
func (s *session) sendOpus(st stream, pkts [][]byte) int {
	sent := 0
	for i, p := range pkts {
		pkt := &rtp.Packet{
			Header: rtp.Header{
				Version: 2, PayloadType: 111, SequenceNumber: st.seq0 + uint16(i),
				Timestamp: st.ts0 + uint32(i)*960, SSRC: 1, Marker: i == 0,
			},
			Payload: p,
		}
		send := st.sendStart + time.Duration(i)*20*time.Millisecond
		if s.schedule(st, i, send, pkt) {
			sent++
		}
	}
	s.senderReports(st, time.Duration(len(pkts))*20*time.Millisecond)
	return sent
}

// sendVP8 schedules VP8 frames at fps and returns the number of RTP packets.
func (s *session) sendVP8(st stream, frames [][]byte, fps int) int {
	return s.sendVideo(st, frames, fps, &codecs.VP8Payloader{EnablePictureID: true})
}

// sendVideo schedules video frames at fps and returns the number of RTP packets.
func (s *session) sendVideo(st stream, frames [][]byte, fps int, payloader rtp.Payloader) int {
	pz := rtp.NewPacketizerWithOptions(1200, payloader,
		rtp.NewFixedSequencer(st.seq0), st.rate, rtp.WithTimestamp(st.ts0), rtp.WithPayloadType(96), rtp.WithSSRC(2))
	step := st.rate / uint32(fps)
	n := 0
	for i, f := range frames {
		send := st.sendStart + time.Duration(i)*time.Second/time.Duration(fps)
		for _, pkt := range pz.Packetize(f, step) {
			s.schedule(st, n, send, pkt)
			n++
		}
	}
	s.senderReports(st, time.Duration(len(frames))*time.Second/time.Duration(fps))
	return n
}

func (s *session) schedule(st stream, i int, send time.Duration, pkt *rtp.Packet) bool {
	if st.lose != nil && st.lose(i) {
		return false
	}
	arrive := st.delay + send
	if st.swap != nil && st.swap(i) {
		arrive += 25 * time.Millisecond
	}
	// The SFU reuses its buffers: hand the sink a copy that we scribble over afterwards.
	s.at(arrive, func() {
		c := pkt.Clone()
		(*st.sink).WriteRTP(c)
		for j := range c.Payload {
			c.Payload[j] = 0xEE
		}
	})
	return true
}

// senderReports schedules reports for a stream lasting dur: NTP is the
// sender's (offset) clock, RTP the stream's timestamp at that instant.
func (s *session) senderReports(st stream, dur time.Duration) {
	if st.srEvery == 0 {
		return
	}
	for at := st.srFirst; at < dur; at += st.srEvery {
		send := st.sendStart + at
		sr := &rtcp.SenderReport{
			SSRC:    1,
			NTPTime: ntpTime(s.start.Add(send + s.ntpOff)),
			RTPTime: st.ts0 + uint32(int64(at)*int64(st.rate)/int64(time.Second)),
		}
		s.at(send+st.delay, func() { (*st.sink).OnRTCP(sr) })
	}
}

// needFF returns the path of an ffmpeg tool, skipping the test when it is
// missing — unless CI is set, where a missing tool is a failure.
func needFF(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed; skipping a test judged by real ffmpeg (apt-get install ffmpeg)", name)
	}
	return p
}
