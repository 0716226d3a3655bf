package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/medcall/medcall/recorder/store/miniotest"
)

func newTestS3(t *testing.T, srv *miniotest.Server, bucket, extra string) *S3 {
	t.Helper()
	cfg, err := ParseS3URL(srv.URL(bucket, extra))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	s, err := NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3VerifyCatchesDigestMismatch(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	s := newTestS3(t, srv, "verify", "&create=true")
	data := []byte("the bytes that were sent")
	info, err := s.Put(ctx, "obj.webm", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.verify(ctx, "obj.webm", info.SHA256, info.Size); err != nil {
		t.Errorf("verify with the right digest: %v", err)
	}
	// The object changes under us (another writer, corruption at rest).
	other := []byte("the bytes that were stored")
	if _, err := s.client.PutObject(ctx, "verify", "obj.webm", bytes.NewReader(other), int64(len(other)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = s.verify(ctx, "obj.webm", info.SHA256, info.Size)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("verify of a changed object = %v, want ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), info.SHA256) {
		t.Errorf("error %q does not name the expected digest", err)
	}
	if _, err := s.verify(ctx, "obj.webm", info.SHA256, info.Size+1); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("verify with a wrong size = %v, want ErrDigestMismatch", err)
	}
}

func TestS3ObjectLockRetention(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	s := newTestS3(t, srv, "locked", "&create=true&lock=true&retention=1h")
	if s.lockMode != minio.Governance {
		t.Fatalf("lock mode = %q, want GOVERNANCE by default", s.lockMode)
	}
	for _, n := range []int{100, 2*minPartSize + 1} {
		key := "retained.webm"
		before := time.Now()
		if _, err := s.Put(ctx, key, bytes.NewReader(make([]byte, n)), int64(n)); err != nil {
			t.Fatalf("Put %d bytes into a locked bucket: %v", n, err)
		}
		mode, until, err := s.client.GetObjectRetention(ctx, "locked", key, "")
		if err != nil {
			t.Fatal(err)
		}
		if mode == nil || *mode != minio.Governance || until == nil ||
			until.Before(before.Add(59*time.Minute)) || until.After(time.Now().Add(61*time.Minute)) {
			t.Errorf("%d-byte object retention = %v until %v, want GOVERNANCE for 1h", n, mode, until)
		}
	}
	c := newTestS3(t, srv, "locked", "&retention=1h&retention_mode=compliance")
	if c.lockMode != minio.Compliance {
		t.Errorf("lock mode = %q, want COMPLIANCE as configured", c.lockMode)
	}
	plain := newTestS3(t, srv, "unlocked", "&create=true")
	if plain.lockMode != "" {
		t.Errorf("bucket without Object Lock got lock mode %q", plain.lockMode)
	}
}
