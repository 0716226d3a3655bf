package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// RetryPolicy bounds how an S3 store retries transient failures (network
// errors, 5xx, throttling). The zero value means DefaultRetryPolicy.
type RetryPolicy struct {
	// Attempts is the total number of tries of one operation, including the
	// first.
	Attempts int
	// BaseDelay is the wait before the first retry; each later wait doubles,
	// with up to 50% random jitter, until MaxDelay.
	BaseDelay time.Duration
	// MaxDelay caps a single wait.
	MaxDelay time.Duration

	log *slog.Logger // the store's logger (S3Config.Logger); nil means slog.Default()
}

// Trace observes a store's work on behalf of one caller, like
// net/http/httptrace: attach it to the context of the calls to observe.
type Trace struct {
	// Retrying is called for each failed attempt that will be retried (the
	// last failure is returned to the caller instead), so a caller can
	// count failed attempts from the first one, not after the retries are
	// used up.
	Retrying func(op string, attempt int, err error)
}

type traceKey struct{}

// WithTrace returns ctx carrying tr for the store calls made with it.
func WithTrace(ctx context.Context, tr *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, tr)
}

// DefaultRetryPolicy rides out a store restart of about a minute: 10 tries,
// waits from 250 ms doubling to at most 15 s.
var DefaultRetryPolicy = RetryPolicy{Attempts: 10, BaseDelay: 250 * time.Millisecond, MaxDelay: 15 * time.Second}

func (p RetryPolicy) orDefault() RetryPolicy {
	if p.Attempts <= 0 {
		d := DefaultRetryPolicy
		d.log = p.log
		return d
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultRetryPolicy.BaseDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	return p
}

// delay returns the wait before retry number n (1-based).
func (p RetryPolicy) delay(n int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	return d/2 + rand.N(d/2+1)
}

// do runs fn until it succeeds, fails permanently, the attempts are used up
// or ctx is done. op names the operation in the returned error.
func (p RetryPolicy) do(ctx context.Context, op string, fn func() error) error {
	p = p.orDefault()
	var err error
	for n := 1; ; n++ {
		if err = fn(); err == nil {
			return nil
		}
		if !transient(err) {
			return err
		}
		if n >= p.Attempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", op, n, err)
		}
		wait := p.delay(n)
		log := p.log
		if log == nil {
			log = slog.Default()
		}
		log.Warn("store: transient failure, retrying", "op", op, "attempt", n, "wait", wait, "err", err)
		if tr, _ := ctx.Value(traceKey{}).(*Trace); tr != nil && tr.Retrying != nil {
			tr.Retrying(op, n, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: stopped retrying: %w (last error: %v)", op, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// transient reports whether err is worth retrying: a network failure or an
// S3 error that says "try again".
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
			"XMinioServerNotInitialized",
			"XMinioReadQuorum", "XMinioWriteQuorum", "OperationTimedOut":
			return true
		}
		return resp.StatusCode >= 500 || resp.StatusCode == 429
	}
	if errors.Is(err, io.ErrUnexpectedEOF) { // connection dropped mid-response
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.As(err, new(*net.OpError)) {
		return true
	}
	return minio.IsNetworkOrHostDown(err, true)
}

// Rejected reports whether err is the store refusing one object in a way
// that trying again will not change: an invalid key, no permission, the
// key taken by something that is not an object, or a request S3 answers
// with a client error (4xx other than timeout and throttling). An outage
// is not a rejection: a retry rides it out.
func Rejected(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrInvalidKey) || errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrExist) ||
		errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTDIR) {
		return true
	}
	if transient(err) {
		return false
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 429
	}
	return false
}
