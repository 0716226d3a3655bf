package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// maxRedirects bounds how many redirects one Dial follows.
const maxRedirects = 3

// Redirect is a join answered by redirect: the consultation lives on the
// node at URL (signaling/PROTOCOL.md, "Redirect").
type Redirect struct{ URL string }

func (r *Redirect) Error() string { return "client: redirected to " + r.URL }

// Dial connects, joins, negotiates the publish connection, waits until it is
// connected and starts publishing audio. In a cluster it follows the entry
// node's redirect to the node hosting the consultation (same scheme only, a
// few hops at most). It returns a *ProtocolError when the server refuses the
// join.
func Dial(ctx context.Context, o Options) (*Client, error) {
	for hops := 0; ; hops++ {
		c, err := dialOnce(ctx, o)
		var r *Redirect
		if !errors.As(err, &r) {
			return c, err
		}
		if hops >= maxRedirects {
			return nil, fmt.Errorf("client: more than %d redirects (last to %s)", maxRedirects, r.URL)
		}
		if err := sameScheme(o.URL, r.URL); err != nil {
			return nil, err
		}
		o.URL = r.URL
	}
}

// URL is the signaling URL of the node this client joined on.
func (c *Client) URL() string { return c.opts.URL }

// sameScheme refuses a redirect that changes the scheme (wss to ws would
// send the token in clear) or is not a WebSocket URL.
func sameScheme(from, to string) error {
	f, err1 := url.Parse(from)
	t, err2 := url.Parse(to)
	if err1 != nil || err2 != nil || t.Host == "" || f.Scheme != t.Scheme {
		return fmt.Errorf("client: refused redirect from %s to %q: must be a %s:// URL", from, to, f.Scheme)
	}
	return nil
}
