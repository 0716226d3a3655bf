// Package webhook tells the booking backend what happened, as signed
// webhooks per the Standard Webhooks specification (standardwebhooks.com):
// every request carries webhook-id, webhook-timestamp and webhook-signature
// (HMAC-SHA256 over "id.timestamp.body" with the shared secret), made by the
// specification's own Go library.
//
// Delivery is at least once and in order: an event is written to an on-disk
// queue (fsync, rename) before Send returns, and Run sends the queue oldest
// first, retrying every failure with exponential backoff until the receiver
// answers 2xx; only then is the message removed. A receiver that is down, or
// a medcall restart, loses nothing. A message may be sent again when its
// answer is lost; it keeps its webhook-id, so the receiver drops the copy
// (the specification's idempotency rule).
//
// Payloads carry only pseudonymous ids (consultation, patient, recording)
// and object keys built from them: never names, tokens or media.
//
// The package lives under signaling because it is the other direction of the
// conversation with the booking backend (which mints the join tokens that
// signaling verifies); it imports no medcall package, so cmd wires both the
// SFU's and the recorder's events into it without an import back-edge.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Options configure a Sender.
type Options struct {
	// URL receives every event by POST.
	URL string
	// Secret is the shared signing secret: "whsec_" followed by base64 of
	// 24 to 64 random bytes, as the specification recommends.
	Secret string
	// Dir holds the durable queue (under the data directory).
	Dir string
	// Client sends the requests; nil means one with a 10 s timeout.
	Client *http.Client
	// MinBackoff and MaxBackoff bound the wait between retries; zero means
	// 1 s and 15 s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives a line per failed attempt; nil means slog.Default().
	Logger *slog.Logger
}

// Sender queues events durably and delivers them.
type Sender struct {
	o    Options
	wh   *standardwebhooks.Webhook
	q    queue
	kick chan struct{}
	mu   sync.Mutex // serializes enqueue, so one id is counted once

	pending   atomic.Int64
	delivered atomic.Uint64
	failed    atomic.Uint64
}

// New checks the options and counts what the queue already holds (from
// before a restart).
func New(o Options) (*Sender, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("webhook: URL %q: want http(s)://host/path", o.URL)
	}
	if u.User != nil {
		return nil, errors.New("webhook: URL carries credentials; the signature authenticates medcall, remove them")
	}
	wh, err := standardwebhooks.NewWebhook(o.Secret)
	if err != nil || o.Secret == "" {
		return nil, fmt.Errorf("webhook: secret must be whsec_ followed by base64 (e.g. whsec_$(head -c 32 /dev/urandom | base64)): %v", err)
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(15*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	q, err := openQueue(o.Dir)
	if err != nil {
		return nil, err
	}
	s := &Sender{o: o, wh: wh, q: q, kick: make(chan struct{}, 1)}
	ms, err := q.list()
	if err != nil {
		o.Logger.Error("webhook queue", "err", err)
	}
	s.pending.Store(int64(len(ms)))
	return s, nil
}

// Pending is the number of events not yet accepted by the receiver.
func (s *Sender) Pending() int64 { return s.pending.Load() }

// Delivered is the number of events the receiver accepted.
func (s *Sender) Delivered() uint64 { return s.delivered.Load() }

// Failed is the number of failed delivery attempts.
func (s *Sender) Failed() uint64 { return s.failed.Load() }

// enqueue stores one event durably and wakes Run.
func (s *Sender) enqueue(id string, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	added, err := s.q.put(queued{ID: id, Enqueued: time.Now(), Body: body})
	if err != nil {
		return err
	}
	if added {
		s.pending.Add(1)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// Run delivers queued events, oldest first, until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	backoff := s.o.MinBackoff
	for {
		ms, err := s.q.list()
		if err != nil {
			s.o.Logger.Error("webhook queue", "err", err)
		}
		wait := time.Duration(1 << 62)
		for _, m := range ms {
			if ctx.Err() != nil {
				return
			}
			if err := s.deliver(ctx, m); err != nil {
				s.failed.Add(1)
				s.o.Logger.Warn("webhook delivery failed; will retry", "webhook_id", m.ID, "pending", s.Pending(), "retry_in", backoff, "err", err)
				wait = backoff
				backoff = min(2*backoff, s.o.MaxBackoff)
				break
			}
			backoff = s.o.MinBackoff
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver signs and POSTs one message; a 2xx answer removes it from the queue.
func (s *Sender) deliver(ctx context.Context, m queued) error {
	now := time.Now()
	sig, err := s.wh.Sign(m.ID, now, m.Body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(m.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "medcall-webhook")
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", sig)
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", s.o.URL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: receiver answered %s", s.o.URL, resp.Status)
	}
	if err := s.q.remove(m.ID); err != nil {
		return fmt.Errorf("delivered, but could not remove it from the queue (it will be sent again): %w", err)
	}
	s.pending.Add(-1)
	s.delivered.Add(1)
	return nil
}
