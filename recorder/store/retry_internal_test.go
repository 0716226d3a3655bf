package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"wrapped connection reset", fmt.Errorf("put: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"server not initialized", minio.ErrorResponse{Code: "XMinioServerNotInitialized", StatusCode: 503}, true},
		{"slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, true},
		{"internal error", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, true},
		{"access denied", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{"no such bucket", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, false},
		{"bad digest", minio.ErrorResponse{Code: "BadDigest", StatusCode: 400}, false},
		{"cancelled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"size mismatch", ErrSizeMismatch, false},
	}
	for _, tt := range tests {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	p := RetryPolicy{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}
	for n := 1; n <= 10; n++ {
		if d := p.delay(n); d < 0 || d > p.MaxDelay {
			t.Errorf("delay(%d) = %s, want within [0, %s]", n, d, p.MaxDelay)
		}
	}
	calls := 0
	err := p.do(context.Background(), "op", func() error {
		calls++
		return io.ErrUnexpectedEOF
	})
	if calls != 4 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("transient failure: %d calls, err %v; want 4 calls and the last error wrapped", calls, err)
	}
	calls = 0
	err = p.do(context.Background(), "op", func() error {
		calls++
		if calls < 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	if calls != 3 || err != nil {
		t.Errorf("recovering failure: %d calls, err %v; want 3 calls and success", calls, err)
	}
	calls = 0
	denied := minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}
	if err := p.do(context.Background(), "op", func() error { calls++; return denied }); calls != 1 || err == nil {
		t.Errorf("permanent failure retried: %d calls, err %v", calls, err)
	}
}
