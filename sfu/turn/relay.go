package turn

import (
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// errRefused is returned to pion for a packet the policy or budget refuses;
// pion drops the packet and the allocation stays up.
var errRefused = errors.New("turn: relay destination refused")

// bucket is a credential's byte budget in one direction.
type bucket struct{ l *rate.Limiter }

// newBucket allows bytesPerSec sustained with one second of burst.
func newBucket(bytesPerSec int) *bucket {
	return &bucket{l: rate.NewLimiter(rate.Limit(bytesPerSec), bytesPerSec)}
}

func (b *bucket) take(n int) bool { return b.l.AllowN(time.Now(), n) }

// relayConn is one allocation's relay socket. Every datagram the client
// sends is checked against the policy (IP and port) and the credential's
// budget; datagrams arriving from anywhere but the SFU's media addresses are
// dropped.
type relayConn struct {
	net.PacketConn
	s *Server
	g *grant

	once sync.Once
}

// WriteTo sends client -> peer.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrPort(addr)
	if !ok {
		c.s.met.Refused(ReasonOtherHost)
		return 0, errRefused
	}
	if local := c.s.cfg.Policy.toLocal(ap); local != ap {
		ap, addr = local, net.UDPAddrFromAddrPort(local)
	}
	if r := c.s.cfg.Policy.Check(ap); r != "" {
		c.s.met.Refused(r)
		return 0, errRefused
	}
	if !c.g.up.take(len(p)) {
		c.s.met.Refused(ReasonBandwidth)
		return 0, errRefused
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	c.s.met.BytesToPeer.Add(uint64(n))
	return n, err
}

// ReadFrom receives peer -> client, skipping what the policy refuses.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		ap, ok := addrPort(addr)
		if !ok || c.s.cfg.Policy.Check(ap) != "" {
			continue // not the SFU: never reaches the client
		}
		if !c.g.down.take(n) {
			c.s.met.Refused(ReasonBandwidth)
			continue
		}
		c.s.met.BytesToClient.Add(uint64(n))
		if pub := c.s.cfg.Policy.toPublic(ap); pub != ap {
			addr = net.UDPAddrFromAddrPort(pub)
		}
		return n, addr, nil
	}
}

// Close ends the allocation's socket once and forgets it.
func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.PacketConn.Close()
		c.s.mu.Lock()
		delete(c.g.conns, c)
		c.s.mu.Unlock()
		c.s.met.AllocationsActive.Add(-1)
	})
	return err
}
