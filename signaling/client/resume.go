package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/signaling"
	"github.com/pion/webrtc/v4"
)

// ErrSocketReplaced fails a request whose reply was due on a signaling
// socket that a resume replaced: send it again.
var ErrSocketReplaced = errors.New("client: the signaling socket was replaced before the reply came; send the request again")

// sock is one signaling WebSocket.
type sock struct {
	conn  *websocket.Conn
	local net.IP        // the socket's local address; nil if unknown
	gone  chan struct{} // closed when a resume replaces it
}

func (s *sock) write(ctx context.Context, trace func(bool, []byte), m signaling.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if trace != nil {
		trace(true, b)
	}
	return s.conn.Write(ctx, websocket.MessageText, b)
}

// current is the socket in use.
func (c *Client) current() *sock {
	c.sockMu.Lock()
	defer c.sockMu.Unlock()
	return c.sock
}

// dialSocket opens a signaling socket to o.URL, noting its local address
// (when the HTTP client's transport is an *http.Transport dialing TCP
// itself), so a network change that removed that address is noticed.
func dialSocket(ctx context.Context, o Options) (*sock, error) {
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	var (
		mu    sync.Mutex
		local net.IP
	)
	tr, ok := hc.Transport.(*http.Transport)
	if hc.Transport == nil {
		tr, ok = http.DefaultTransport.(*http.Transport)
	}
	if ok && tr.DialTLSContext == nil {
		tr = tr.Clone()
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err == nil {
				if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
					mu.Lock()
					local = a.IP
					mu.Unlock()
				}
			}
			return conn, err
		}
		copied := *hc
		copied.Transport = tr
		hc = &copied
	}
	conn, _, err := websocket.Dial(ctx, o.URL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("client: connect %s: %w", o.URL, err)
	}
	conn.SetReadLimit(1 << 20)
	mu.Lock()
	defer mu.Unlock()
	return &sock{conn: conn, local: local, gone: make(chan struct{})}, nil
}

// resume opens a new signaling socket and takes this participant over on it
// (signaling/PROTOCOL.md, "Network change"): the peer connections, tracks
// and place in the consultation go on. The old socket is dropped without a
// word (its network is gone). Fresh TURN credentials from the reply are put
// into both connections for the ICE restart that must follow.
func (c *Client) resume(ctx context.Context) error {
	secret := c.joined.Resume
	if secret == "" {
		return errors.New("client: the server gave no resume secret; cannot resume")
	}
	sk, err := dialSocket(ctx, c.opts)
	if err != nil {
		return err
	}
	c.sockMu.Lock()
	old := c.sock
	c.sock = sk
	c.sockMu.Unlock()
	close(old.gone)
	c.wg.Add(1)
	go c.readLoop(sk)
	reply, err := c.Request(ctx, signaling.Message{Type: signaling.TypeJoin, Token: c.opts.Token,
		Consultation: c.opts.Consultation, Resume: secret})
	// Closed only now: were the old network still up, its close could
	// reach the server first and remove the participant.
	_ = old.conn.CloseNow()
	var pe *ProtocolError
	if errors.As(err, &pe) && pe.Code == signaling.CodeResumeFailed {
		return fmt.Errorf("%w: %v", errResumeRefused, err)
	}
	if err != nil {
		return fmt.Errorf("client: resume: %w", err)
	}
	if !reply.Resumed {
		return fmt.Errorf("client: resume: the server answered %s without resumed", reply.Type)
	}
	if len(reply.ICEServers) > 0 {
		cfg := peerConfig(reply.ICEServers, c.opts)
		for _, pc := range []*webrtc.PeerConnection{c.pub, c.sub} {
			// pion updates its servers under a gathering that may still be
			// reading them (a data race): then the restart gathers with the
			// old credentials, which stay valid until this participant leaves.
			if pc.ICEGatheringState() != webrtc.ICEGatheringStateComplete {
				continue
			}
			cur := pc.GetConfiguration()
			cur.ICEServers = cfg.ICEServers
			if err := pc.SetConfiguration(cur); err != nil {
				c.log.Warn("resume: new TURN credentials not applied", "err", err)
			}
		}
	}
	c.mu.Lock()
	c.resumes++
	c.mu.Unlock()
	return nil
}
