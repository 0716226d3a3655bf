package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/pion/webrtc/v4"
)

// Network change (signaling/PROTOCOL.md, "Network change"): the client
// watches its connections and its addresses; when the network it was using
// is gone it resumes on a new signaling socket if the old one's address
// went too, and restarts ICE on both peer connections.

const (
	// watchEvery is how often the client looks at its addresses and ICE states.
	watchEvery = 200 * time.Millisecond
	// restartAgain is the least time between two automatic restarts.
	restartAgain = 2 * time.Second
	// restartStep bounds each signaling round trip of a restart; past it the
	// socket is taken for dead and the participant resumed on a new one.
	restartStep = 3 * time.Second
)

// RestartICE restarts ICE on both peer connections: a publish offer with new
// ICE credentials and a restart request for the subscribe connection. If
// the signaling socket's local address no longer exists, or the socket does
// not answer, the participant is first resumed on a new socket. It is what
// the client does by itself on a network change; tests call it too.
func (c *Client) RestartICE(ctx context.Context) error {
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	if err := c.net.UpdateInterfaces(); err != nil {
		return fmt.Errorf("client: list interfaces: %w", err)
	}
	resumed := false
	if local := c.current().local; local != nil && !addressExists(local) {
		if err := c.resume(ctx); err != nil {
			return err
		}
		resumed = true
	}
	err := c.restartBoth(ctx)
	if err != nil && !resumed && ctx.Err() == nil {
		// The socket looked fine but did not answer: its path is gone too.
		c.log.Info("signaling socket did not answer during an ICE restart; resuming on a new one", "err", err)
		if err = c.resume(ctx); err == nil {
			err = c.restartBoth(ctx)
		}
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.restarts++
	c.mu.Unlock()
	return nil
}

// restartBoth offers an ICE restart on the publish connection and asks the
// server for one on the subscribe connection.
func (c *Client) restartBoth(ctx context.Context) error {
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, restartStep) }
	if c.pub.RemoteDescription() != nil {
		c.upMu.Lock()
		sctx, cancel := step()
		err := c.offerPublish(sctx, &webrtc.OfferOptions{ICERestart: true})
		cancel()
		c.upMu.Unlock()
		if err != nil {
			// The offer stays the local description (pion cannot roll it
			// back); the next offerPublish sends it again first.
			return fmt.Errorf("client: publish ICE restart: %w", err)
		}
	}
	sctx, cancel := step()
	defer cancel()
	if _, err := c.Request(sctx, signaling.Message{Type: signaling.TypeRestart, PC: string(sfu.PCSubscribe)}); err != nil {
		return fmt.Errorf("client: subscribe ICE restart: %w", err)
	}
	return nil
}

// Restarts is how many ICE restarts and signaling resumes this client has
// completed.
func (c *Client) Restarts() (restarts, resumes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts, c.resumes
}

// watchNetwork restarts ICE by itself when the network changed: a
// connection's ICE state is disconnected or failed, or the local address
// of a selected candidate pair or of the signaling socket is gone. It
// waits for a usable address first (a network being switched has none for
// a moment).
func (c *Client) watchNetwork() {
	defer c.wg.Done()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var last time.Time
	wait := restartAgain // after a failure, sooner: the new network may lack only its route yet
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		why := c.networkChanged()
		if why == "" || time.Since(last) < wait || !hasUsableAddress() {
			continue
		}
		last = time.Now()
		c.log.Info("network changed; restarting ICE", "why", why)
		ctx, cancel := context.WithTimeout(c.ctx, 4*restartStep)
		err := c.RestartICE(ctx)
		cancel()
		switch {
		case err == nil:
			c.log.Info("ICE restarted", "took", time.Since(last).Round(time.Millisecond).String())
			wait = restartAgain
		case errors.Is(err, errResumeRefused):
			c.log.Warn("the server no longer knows this participant; the call is over", "err", err)
			c.cancel()
			return
		case c.ctx.Err() == nil:
			c.log.Warn("ICE restart failed; trying again", "err", err)
			wait = 0 // the next tick
		}
	}
}

// errResumeRefused marks a resume the server refused (resume_failed).
var errResumeRefused = errors.New("client: the server refused to resume the participant")

// networkChanged says why the client should restart ICE now, or "".
func (c *Client) networkChanged() string {
	for _, pc := range []*webrtc.PeerConnection{c.pub, c.sub} {
		switch pc.ICEConnectionState() {
		case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
			return "ICE " + pc.ICEConnectionState().String()
		}
	}
	c.mu.Lock()
	bases := []net.IP{c.pairBase[0], c.pairBase[1]}
	c.mu.Unlock()
	for _, ip := range bases {
		if ip != nil && !addressExists(ip) {
			return "the selected pair's address is gone"
		}
	}
	if local := c.current().local; local != nil && !addressExists(local) {
		return "the signaling socket's address is gone"
	}
	return ""
}

// watchPairs keeps the local address each connection's selected candidate
// pair sends from (its base: the host address under a reflexive or relayed
// candidate), as ICE selects pairs. Called before the connections start.
func (c *Client) watchPairs() {
	for i, pc := range []*webrtc.PeerConnection{c.pub, c.sub} {
		pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
			if p == nil || p.Local == nil {
				return
			}
			addr := p.Local.Address
			if p.Local.Typ != webrtc.ICECandidateTypeHost {
				addr = p.Local.RelatedAddress
			}
			c.mu.Lock()
			c.pairBase[i] = net.ParseIP(addr)
			c.mu.Unlock()
		})
	}
}

// hostAddrs caches this host's interface addresses for a moment, so the
// watchers of many clients in one process (the bench) share one lookup.
var hostAddrs struct {
	sync.Mutex
	at    time.Time
	addrs []net.Addr
	err   error
}

func interfaceAddrs() ([]net.Addr, error) {
	hostAddrs.Lock()
	defer hostAddrs.Unlock()
	if time.Since(hostAddrs.at) >= watchEvery/2 {
		hostAddrs.addrs, hostAddrs.err = net.InterfaceAddrs()
		hostAddrs.at = time.Now()
	}
	return hostAddrs.addrs, hostAddrs.err
}

// addressExists reports whether ip is an address of one of this host's interfaces.
func addressExists(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := interfaceAddrs()
	if err != nil {
		return true // cannot tell: do not restart on a guess
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// hasUsableAddress reports whether some interface has a non-loopback,
// non-link-local address to gather candidates on.
func hasUsableAddress() bool {
	addrs, err := interfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// Resume moves this participant to a new signaling socket and restarts ICE
// on both connections, as the client does by itself when the old socket's
// network is gone. The others see no leave.
func (c *Client) Resume(ctx context.Context) error {
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	if err := c.resume(ctx); err != nil {
		return err
	}
	if err := c.restartBoth(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.restarts++
	c.mu.Unlock()
	return nil
}
