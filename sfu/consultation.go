package sfu

import (
	"errors"
	"sync"
	"time"
)

// PeerInfo identifies a participant: the token's sub and role.
type PeerInfo struct {
	ID   string
	Role string
}

// PeerEvent tells a participant about another one.
type PeerEvent struct {
	Event string // "joined", "left" or "media"
	ID    string
	Role  string
	Audio bool
	Video bool
}

// Consultation is one session of a consultation: it starts with the first
// join and ends when the last participant leaves.
type Consultation struct {
	s      *SFU
	b      Binding
	tap    Tap
	tracks sync.WaitGroup // forwarding goroutines; the tap closes after them

	mu           sync.Mutex
	ended        bool
	participants map[string]*Participant
}

var errEnded = errors.New("consultation ended")

// Join admits a participant to the consultation named by b, creating it if it
// is not running. b is checked against the binding made by the first join.
// A participant already present with the same id is replaced (a reconnect).
//
// A join that would start a consultation on a server hosting
// Config.MaxConsultations, or while Config.Busy, is refused with
// ErrServerFull before its binding is made.
func (s *SFU) Join(b Binding, peer PeerInfo, sig Signaler) (*Participant, error) {
	release, err := s.admit(b.Consultation)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := s.Bind(b); err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		c := s.consultations[b.Consultation]
		if c == nil { // admit counted it: no room check here
			c = &Consultation{s: s, b: b, participants: map[string]*Participant{}}
			s.consultations[b.Consultation] = c
			s.wg.Add(1)
		}
		s.mu.Unlock()
		p, err := c.add(peer, sig)
		if errors.Is(err, errEnded) {
			continue // it ended between lookup and add: start a new session
		}
		return p, err
	}
}

// admit lets a join of consultation cid go on: it runs here, another join
// is starting it, or the server hosts fewer than Config.MaxConsultations
// (counting those being started). From then until release, cid counts as
// hosted, so joins starting other consultations meanwhile cannot take its
// place (a join is refused before it binds, never after).
func (s *SFU) admit(cid string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.consultations[cid] == nil && s.starting[cid] == 0 && !s.roomLocked() {
		return nil, ErrServerFull
	}
	if s.starting == nil {
		s.starting = map[string]int{}
	}
	s.starting[cid]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.starting[cid]--; s.starting[cid] == 0 {
			delete(s.starting, cid)
		}
	}, nil
}

// roomLocked says whether one more consultation may start: the server is
// not Config.Busy, and those hosted and those joins are starting are fewer
// than Config.MaxConsultations. Called with s.mu held.
func (s *SFU) roomLocked() bool {
	if s.cfg.Busy != nil && s.cfg.Busy() {
		return false
	}
	if s.cfg.MaxConsultations <= 0 {
		return true
	}
	n := len(s.consultations)
	for cid := range s.starting {
		if s.consultations[cid] == nil {
			n++
		}
	}
	return n < s.cfg.MaxConsultations
}

func (c *Consultation) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.participants)
}

// goTrack runs a forwarding goroutine that the tap's Close waits for. Once
// the consultation has ended no new one starts (the participant is gone).
func (c *Consultation) goTrack(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended && len(c.participants) == 0 {
		return
	}
	c.tracks.Add(1)
	go func() {
		defer c.tracks.Done()
		f()
	}()
}

func (c *Consultation) others(p *Participant) []*Participant {
	out := make([]*Participant, 0, len(c.participants))
	for _, q := range c.participants {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

func (c *Consultation) event(t EventType, p *Participant, path string) {
	if c.tap != nil {
		c.tap.OnEvent(Event{Time: time.Now(), Type: t, Participant: p.id, Role: p.role, Path: path})
	}
}

func (c *Consultation) add(peer PeerInfo, sig Signaler) (*Participant, error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return nil, errEnded
	}
	replaced := c.participants[peer.ID]
	n := len(c.participants)
	if replaced != nil {
		n--
	}
	if n >= c.s.cfg.MaxParticipants {
		c.mu.Unlock()
		return nil, ErrFull
	}
	p, err := newParticipant(c, peer, sig)
	if err != nil {
		empty := len(c.participants) == 0
		if empty {
			c.ended = true // before unlocking: no join may slip into a consultation being unlisted
		}
		c.mu.Unlock()
		if empty {
			c.finish()
		}
		return nil, err
	}
	c.participants[peer.ID] = p
	if c.tap == nil && c.s.cfg.Taps != nil && len(c.participants) == 1 {
		c.tap = c.s.cfg.Taps(c.b)
	}
	others := c.others(p)
	c.mu.Unlock()

	if replaced != nil {
		// The stale participant is no longer listed, so its own close will not
		// take its tracks off the others' subscribe connections: do it here.
		rs := replaced.receivers()
		for _, q := range others {
			for _, r := range rs {
				q.unsubscribe(r)
			}
		}
		replaced.close("replaced")
	}
	c.event(EventJoined, p, "")
	for _, q := range others {
		q.sig.Peer(PeerEvent{Event: "joined", ID: p.id, Role: p.role})
		for _, r := range q.receivers() {
			p.subscribe(r)
		}
	}
	p.negotiate()
	return p, nil
}

// publish gives every other participant a downtrack of r.
func (c *Consultation) publish(p *Participant, rs []*Receiver) {
	c.mu.Lock()
	others := c.others(p)
	c.mu.Unlock()
	for _, q := range others {
		for _, r := range rs {
			q.subscribe(r)
		}
		q.negotiate()
	}
}

// unpublish removes r's downtracks from every other participant.
func (c *Consultation) unpublish(p *Participant, rs []*Receiver) {
	c.mu.Lock()
	others := c.others(p)
	c.mu.Unlock()
	for _, q := range others {
		for _, r := range rs {
			q.unsubscribe(r)
		}
		q.negotiate()
	}
}

// remove takes p out; the last one out ends the consultation.
func (c *Consultation) remove(p *Participant) {
	c.mu.Lock()
	if c.participants[p.id] != p {
		c.mu.Unlock()
		return
	}
	delete(c.participants, p.id)
	others := c.others(p)
	empty := len(c.participants) == 0
	if empty {
		c.ended = true
	}
	c.mu.Unlock()

	rs := p.receivers()
	for _, q := range others {
		for _, r := range rs {
			q.unsubscribe(r)
		}
		q.negotiate()
		q.sig.Peer(PeerEvent{Event: "left", ID: p.id, Role: p.role})
	}
	c.event(EventLeft, p, "")
	if empty {
		c.finish()
	}
}

// finish unlists the consultation and closes its tap once every forwarding
// goroutine (and so every tap sink) has stopped.
func (c *Consultation) finish() {
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	// The binding's retention starts now; a new session rebinds it.
	if err := c.s.cfg.Bindings.Finished(c.b.Consultation, time.Now()); err != nil {
		c.s.log.Error("consultation binding: could not mark it finished; it expires later than configured", "consultation", c.b.Consultation, "err", err)
	}
	c.s.mu.Lock()
	if c.s.consultations[c.b.Consultation] == c {
		delete(c.s.consultations, c.b.Consultation)
	}
	c.s.mu.Unlock()
	go func() {
		defer c.s.wg.Done()
		c.tracks.Wait()
		if c.tap != nil {
			c.tap.Close()
		}
	}()
}

// close removes every participant, telling each why.
func (c *Consultation) close(reason string) {
	c.mu.Lock()
	ps := make([]*Participant, 0, len(c.participants))
	for _, p := range c.participants {
		ps = append(ps, p)
	}
	// No join may enter a consultation being closed: a late one sees
	// errEnded, retries, and finds the SFU closed.
	wasEnded := c.ended
	c.ended = true
	c.mu.Unlock()
	if len(ps) == 0 && !wasEnded {
		c.finish()
	}
	for _, p := range ps {
		p.close(reason)
	}
}
