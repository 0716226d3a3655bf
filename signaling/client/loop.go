package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// readLoop routes replies to their requests and everything else to the
// server loop or the event list. When the socket in use ends the client
// ends; a socket a resume replaced ends quietly, and what it still
// delivers is dropped (the participant lives on the new one).
func (c *Client) readLoop(sk *sock) {
	defer c.wg.Done()
	for {
		_, data, err := sk.conn.Read(c.ctx)
		if err != nil {
			if c.current() == sk {
				var ce websocket.CloseError
				if c.ctx.Err() == nil && !(errors.As(err, &ce) && ce.Reason == signaling.ByeLeft) {
					// The server's close status and reason (a rate limit, a
					// failed connection) say why the call ended; its answer
					// to this client's own leave needs no word.
					c.log.Info("signaling socket closed; the call is over", "err", err)
				}
				c.cancel()
			}
			return
		}
		if c.current() != sk {
			continue
		}
		if c.opts.Trace != nil {
			c.opts.Trace(false, data)
		}
		var m signaling.Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.log.Warn("unreadable server message", "err", err)
			continue
		}
		if m.ID != "" {
			c.reqMu.Lock()
			ch := c.pending[m.ID]
			c.reqMu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		switch m.Type {
		case signaling.TypeOffer, signaling.TypeCandidate:
			select {
			case c.server <- m:
			case <-c.ctx.Done():
				return
			}
		default: // participant, bye, errors without an id
			c.mu.Lock()
			c.events = append(c.events, m)
			close(c.evChange)
			c.evChange = make(chan struct{})
			c.mu.Unlock()
		}
	}
}

// serverLoop applies subscribe offers and server candidates in arrival order.
func (c *Client) serverLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case m := <-c.server:
			if m.Type == signaling.TypeCandidate {
				if m.Candidate != nil {
					c.mu.Lock()
					c.serverCands = append(c.serverCands, m.Candidate.Candidate)
					c.mu.Unlock()
					c.addCandidate(sfu.PC(m.PC), *m.Candidate)
				}
				continue
			}
			if err := c.answerSubscribe(m.SDP); err != nil && c.ctx.Err() == nil {
				c.log.Warn("subscribe negotiation failed", "err", err)
			}
		}
	}
}

func (c *Client) answerSubscribe(offer string) error {
	c.countSDP()
	if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return err
	}
	c.flushCandidates(sfu.PCSubscribe)
	answer, err := c.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.sub.SetLocalDescription(answer); err != nil {
		return err
	}
	c.countSDP()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	_, err = c.Request(ctx, signaling.Message{Type: signaling.TypeAnswer, PC: string(sfu.PCSubscribe), SDP: answer.SDP})
	return err
}

func (c *Client) pc(pc sfu.PC) *webrtc.PeerConnection {
	if pc == sfu.PCSubscribe {
		return c.sub
	}
	return c.pub
}

// addCandidate adds a server candidate, queueing it until the connection has
// a remote description of its ICE generation (after an ICE restart the
// server's new candidates may overtake its answer).
func (c *Client) addCandidate(pc sfu.PC, ci webrtc.ICECandidateInit) {
	c.mu.Lock()
	if rd := c.pc(pc).RemoteDescription(); rd == nil || !sfu.SameICEGeneration(ci, rd.SDP) {
		c.cands[pc] = append(c.cands[pc], ci)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if err := c.pc(pc).AddICECandidate(ci); err != nil {
		c.log.Debug("server candidate refused", "err", err)
	}
}

func (c *Client) flushCandidates(pc sfu.PC) {
	c.mu.Lock()
	cs := c.cands[pc]
	delete(c.cands, pc)
	c.mu.Unlock()
	for _, ci := range cs {
		// At once: one of an older ICE generation is dropped, not queued again.
		if err := c.pc(pc).AddICECandidate(ci); err != nil {
			c.log.Debug("server candidate refused", "err", err)
		}
	}
}

func (c *Client) sendCandidate(pc sfu.PC, ic *webrtc.ICECandidate) {
	if ic == nil {
		return
	}
	ci := ic.ToJSON()
	c.notify(signaling.Message{Type: signaling.TypeCandidate, PC: string(pc), Candidate: &ci})
}

func (c *Client) countSDP() {
	c.mu.Lock()
	c.sdp++
	c.mu.Unlock()
}

// ServerCandidates returns the ICE candidates the server has sent.
func (c *Client) ServerCandidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.serverCands...)
}

// SDPCount is the number of offers and answers this client has sent or
// received, so a test can prove an upgrade needed none.
func (c *Client) SDPCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sdp
}

// onTrack counts a remote participant's media; the stream id is their id.
func (c *Client) onTrack(t *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
	st := c.stats(t.StreamID(), t.Kind().String())
	st.mu.Lock()
	st.track = uint32(t.SSRC())
	st.mu.Unlock()
	mime := t.Codec().MimeType
	st.setClockRate(t.Codec().ClockRate)
	keep := c.opts.KeepAudio && t.Kind() == webrtc.RTPCodecTypeAudio
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := rr.Read(buf); err != nil {
				return
			}
		}
	}()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		var pkt rtp.Packet
		for {
			n, _, err := t.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			now := time.Now()
			st.received(&pkt, n, sfu.IsKeyframeStart(mime, &pkt), now)
			if keep {
				c.keep(t.StreamID(), &pkt, now)
			}
		}
	}()
}

func (c *Client) stats(participant, kind string) *recvStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := participant + "/" + kind
	if c.recv[k] == nil {
		c.recv[k] = newRecvStats(c.opts.Fingerprint)
	}
	return c.recv[k]
}

// RequestKeyframe asks for a keyframe of participant's track of kind, as a
// browser's decoder does after a loss it cannot repair: a PLI on the
// subscribe connection, which the server relays to the publisher.
func (c *Client) RequestKeyframe(participant, kind string) error {
	s := c.stats(participant, kind)
	s.mu.Lock()
	ssrc := s.track
	s.mu.Unlock()
	if ssrc == 0 {
		return fmt.Errorf("client: no %s track of %s yet", kind, participant)
	}
	return c.sub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// Received returns what arrived so far from participant's track of kind ("audio" or "video").
func (c *Client) Received(participant, kind string) TrackStats {
	s := c.stats(participant, kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// WaitReceived blocks until cond holds for participant's track of kind.
func (c *Client) WaitReceived(ctx context.Context, participant, kind string, cond func(TrackStats) bool) (TrackStats, error) {
	return c.stats(participant, kind).wait(ctx, cond)
}

// ReceivedFingerprints returns the RTP timestamps received from participant's track (Fingerprint option).
func (c *Client) ReceivedFingerprints(participant, kind string) map[uint32]struct{} {
	s := c.stats(participant, kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint32]struct{}, len(s.prints))
	for k := range s.prints {
		out[k] = struct{}{}
	}
	return out
}

// Sent returns what this client has sent of kind, with the RTP timestamps
// when the Fingerprint option is on.
func (c *Client) Sent(kind string) (TrackStats, map[uint32]struct{}) {
	if kind == "video" {
		return c.videoSent.snapshot()
	}
	return c.audioSent.snapshot()
}

// SendTimes returns, for each RTP timestamp of kind this client has sent,
// when its first packet was sent (Fingerprint option; nil without it).
// Against ReceiveTimes at another client in the same process it gives the
// end-to-end forwarding delay, the SFU keeping RTP timestamps as they are.
func (c *Client) SendTimes(kind string) map[uint32]time.Time {
	if kind == "video" {
		return c.videoSent.sendTimes()
	}
	return c.audioSent.sendTimes()
}

// ReceiveTimes returns, for each RTP timestamp received from participant's
// track of kind, when its first packet arrived (Fingerprint option).
func (c *Client) ReceiveTimes(participant, kind string) map[uint32]time.Time {
	s := c.stats(participant, kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.times)
}

// WaitEvent blocks until an event (participant, bye) matching match has arrived.
func (c *Client) WaitEvent(ctx context.Context, match func(signaling.Message) bool) (signaling.Message, error) {
	for {
		c.mu.Lock()
		for _, e := range c.events {
			if match(e) {
				c.mu.Unlock()
				return e, nil
			}
		}
		ch := c.evChange
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return signaling.Message{}, ctx.Err()
		case <-ch:
		}
	}
}

// Done is closed when the connection to the server has ended.
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

func hasKeyframeRequest(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}
