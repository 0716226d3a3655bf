package client

import (
	"context"
	"errors"
	"strconv"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/signaling"
)

// Requests to the server: each carries an id and its reply is routed back
// to the caller by readLoop (loop.go).

// Request sends a request and waits for its reply; an error reply is a *ProtocolError.
func (c *Client) Request(ctx context.Context, m signaling.Message) (signaling.Message, error) {
	ch := make(chan signaling.Message, 1)
	c.reqMu.Lock()
	c.nextID++
	m.ID = strconv.Itoa(c.nextID)
	c.pending[m.ID] = ch
	c.reqMu.Unlock()
	defer func() {
		c.reqMu.Lock()
		delete(c.pending, m.ID)
		c.reqMu.Unlock()
	}()
	sk := c.current()
	if err := sk.write(ctx, c.opts.Trace, m); err != nil {
		return signaling.Message{}, err
	}
	select {
	case r := <-ch:
		return asReply(r)
	case <-ctx.Done():
		return signaling.Message{}, ctx.Err()
	case <-sk.gone:
		// The server answers on the socket that carried the request.
		return signaling.Message{}, ErrSocketReplaced
	case <-c.ctx.Done():
		// The reply may have come just before the server closed the socket
		// (a leave is acked, then bye, then close): prefer it.
		select {
		case r := <-ch:
			return asReply(r)
		default:
		}
		return signaling.Message{}, errors.New("client: connection closed")
	}
}

// asReply turns an error reply into a *ProtocolError.
func asReply(r signaling.Message) (signaling.Message, error) {
	if r.Type == signaling.TypeError {
		return r, &ProtocolError{Code: r.Code, Message: r.Message}
	}
	return r, nil
}

// notify sends a request without waiting for its reply (which is discarded).
func (c *Client) notify(m signaling.Message) {
	c.reqMu.Lock()
	c.nextID++
	m.ID = strconv.Itoa(c.nextID)
	c.reqMu.Unlock()
	if err := c.write(c.ctx, m); err != nil {
		c.log.Debug("send failed", "type", m.Type, "err", err)
	}
}

func (c *Client) write(ctx context.Context, m signaling.Message) error {
	return c.current().write(ctx, c.opts.Trace, m)
}

// WriteRaw sends bytes as they are, for tests of the server's input handling.
func (c *Client) WriteRaw(ctx context.Context, b []byte) error {
	return c.current().conn.Write(ctx, websocket.MessageText, b)
}
