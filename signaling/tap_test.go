package signaling_test

import (
	"sync"

	"github.com/medcall/medcall/sfu"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// testTapFactory is an in-process consumer like the recorder: it records what
// each consultation's taps saw.
type testTapFactory struct {
	mu   sync.Mutex
	taps map[string][]*testTap // by consultation
}

func (f *testTapFactory) open(b sfu.Binding) sfu.Tap {
	t := &testTap{b: b, sinks: map[string]*testSink{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taps == nil {
		f.taps = map[string][]*testTap{}
	}
	f.taps[b.Consultation] = append(f.taps[b.Consultation], t)
	return t
}

func (f *testTapFactory) get(cid string) []*testTap {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*testTap(nil), f.taps[cid]...)
}

type testTap struct {
	b      sfu.Binding
	mu     sync.Mutex
	sinks  map[string]*testSink // participant/kind
	events []sfu.Event
	closed bool
}

func (t *testTap) OnTrack(info sfu.TrackInfo) sfu.TrackSink {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &testSink{info: info, prints: map[uint32]struct{}{}}
	t.sinks[info.Participant+"/"+string(info.Kind)] = s
	if info.Kind == sfu.KindVideo {
		info.RequestKeyframe(sfu.KeyframeRecorderSync)
	}
	return s
}

func (t *testTap) OnEvent(ev sfu.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, ev)
}

func (t *testTap) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
}

func (t *testTap) sink(key string) *testSink {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sinks[key]
}

type testSink struct {
	info    sfu.TrackInfo
	mu      sync.Mutex
	packets int
	srs     int
	prints  map[uint32]struct{}
	closed  bool
	late    int // packets after Close: must stay 0
}

func (s *testSink) WriteRTP(p *rtp.Packet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.late++
	}
	s.packets++
	s.prints[p.Timestamp] = struct{}{}
}

func (s *testSink) OnRTCP(*rtcp.SenderReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srs++
}

func (s *testSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

func (t *testTap) snapshotEvents() []sfu.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]sfu.Event(nil), t.events...)
}
