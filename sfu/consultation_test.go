package sfu

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// gateBindings is MemoryBindings whose Bind of one consultation waits for a
// gate, and which notes every consultation it was asked to bind.
type gateBindings struct {
	MemoryBindings
	hold    string
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
	mu      sync.Mutex
	asked   map[string]bool
}

func (g *gateBindings) Bind(b Binding) error {
	g.mu.Lock()
	g.asked[b.Consultation] = true
	g.mu.Unlock()
	if b.Consultation == g.hold {
		g.once.Do(func() { close(g.entered) })
		<-g.gate
	}
	return g.MemoryBindings.Bind(b)
}

func (g *gateBindings) wasAsked(cid string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.asked[cid]
}

type nopSig struct{}

func (nopSig) Offer(string)                          {}
func (nopSig) Candidate(PC, webrtc.ICECandidateInit) {}
func (nopSig) Peer(PeerEvent)                        {}
func (nopSig) Bye(string)                            {}

// TestJoinRefusedBeforeBindingWhenFull: with room for one consultation, a
// join starting consultation A holds its place from admission on: while A
// is still binding, a join starting B is refused with ErrServerFull without
// B ever being bound, and a second join of A is admitted. Once A ends, B
// starts.
func TestJoinRefusedBeforeBindingWhenFull(t *testing.T) {
	g := &gateBindings{hold: "c-a", entered: make(chan struct{}), gate: make(chan struct{}), asked: map[string]bool{}}
	s, err := New(Config{ListenIP: net.ParseIP("127.0.0.1"), MaxConsultations: 1, Bindings: g})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type joined struct {
		p   *Participant
		err error
	}
	first, second := make(chan joined, 1), make(chan joined, 1)
	go func() {
		p, err := s.Join(Binding{Consultation: "c-a", Patient: "p-a"}, PeerInfo{ID: "p-a", Role: "patient"}, nopSig{})
		first <- joined{p, err}
	}()
	<-g.entered // admitted, binding
	if _, err := s.Join(Binding{Consultation: "c-b", Patient: "p-b"}, PeerInfo{ID: "p-b", Role: "patient"}, nopSig{}); !errors.Is(err, ErrServerFull) {
		t.Fatalf("join starting c-b while c-a is being started: %v, want ErrServerFull", err)
	}
	if g.wasAsked("c-b") {
		t.Error("the refused join of c-b was bound")
	}
	go func() {
		p, err := s.Join(Binding{Consultation: "c-a", Patient: "p-a"}, PeerInfo{ID: "d-a", Role: "clinician"}, nopSig{})
		second <- joined{p, err}
	}()
	close(g.gate)
	for _, ch := range []chan joined{first, second} {
		if j := <-ch; j.err != nil || j.p == nil {
			t.Fatalf("join of c-a: %v", j.err)
		}
	}
	if _, err := s.Join(Binding{Consultation: "c-b", Patient: "p-b"}, PeerInfo{ID: "p-b", Role: "patient"}, nopSig{}); !errors.Is(err, ErrServerFull) {
		t.Fatalf("join starting c-b while c-a runs: %v, want ErrServerFull", err)
	}
	s.End("c-a", "left")
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Hosted()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("c-a still hosted after it ended: %v", s.Hosted())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p, err := s.Join(Binding{Consultation: "c-b", Patient: "p-b"}, PeerInfo{ID: "p-b", Role: "patient"}, nopSig{}); err != nil || p == nil {
		t.Fatalf("join starting c-b once c-a ended: %v", err)
	}
}

// TestBusyServerRefusesOnlyNewConsultations: while Config.Busy says so, a
// join that would start a consultation is refused with ErrServerFull
// before it binds, and one to a running consultation is admitted; once it
// says otherwise, new consultations start again.
func TestBusyServerRefusesOnlyNewConsultations(t *testing.T) {
	var busy atomic.Bool
	g := &gateBindings{entered: make(chan struct{}), asked: map[string]bool{}}
	s, err := New(Config{ListenIP: net.ParseIP("127.0.0.1"), Bindings: g, Busy: busy.Load})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	join := func(cid, id, role string) error {
		_, err := s.Join(Binding{Consultation: cid, Patient: "p-" + cid}, PeerInfo{ID: id, Role: role}, nopSig{})
		return err
	}
	if err := join("c-a", "p-a", "patient"); err != nil {
		t.Fatal(err)
	}
	busy.Store(true)
	if err := join("c-b", "p-b", "patient"); !errors.Is(err, ErrServerFull) {
		t.Fatalf("join starting c-b while busy: %v, want ErrServerFull", err)
	}
	if g.wasAsked("c-b") {
		t.Error("the refused join of c-b was bound")
	}
	if err := join("c-a", "d-a", "clinician"); err != nil {
		t.Fatalf("join of the running c-a while busy: %v", err)
	}
	busy.Store(false)
	if err := join("c-b", "p-b", "patient"); err != nil {
		t.Fatalf("join starting c-b once no longer busy: %v", err)
	}
}
