package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/recorder/store/miniotest"
)

const partSize = 5 << 20

func openS3(t *testing.T, srv *miniotest.Server, bucket, extra string, retry store.RetryPolicy) *store.S3 {
	t.Helper()
	cfg, err := store.ParseS3URL(srv.URL(bucket, extra))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey, cfg.Retry = srv.AccessKey, srv.SecretKey, retry
	s, err := store.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func readAll(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func TestS3(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()

	t.Run("Open through URL and env", func(t *testing.T) {
		srv.SetEnv(t)
		if _, err := store.Open(ctx, srv.URL("absent", "")); err == nil {
			t.Error("Open of a missing bucket without create=true succeeded")
		}
		st, err := store.Open(ctx, srv.URL("opened", "&create=true"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(ctx, "k", bytes.NewReader([]byte("v")), 1); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Open(ctx, srv.URL("opened", "&retention=24h")); err == nil {
			t.Error("retention on a bucket without Object Lock was accepted")
		}
	})

	s := openS3(t, srv, "recordings", "&create=true", store.RetryPolicy{})
	sizes := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 1000},
		{"exactly one part", partSize},
		{"multipart", 2*partSize + 12345},
	}
	for i, tt := range sizes {
		for _, declared := range []bool{true, false} {
			name := tt.name + map[bool]string{true: "/known size", false: "/unknown size"}[declared]
			t.Run(name, func(t *testing.T) {
				data := randomBytes(tt.size, uint64(i))
				key := "patients/p1/consultations/c1/" + tt.name + ".webm"
				size := int64(-1)
				if declared {
					size = int64(len(data))
				}
				info, err := s.Put(ctx, key, bytes.NewReader(data), size)
				if err != nil {
					t.Fatal(err)
				}
				if info.SHA256 != hexSHA(data) || info.Size != int64(len(data)) {
					t.Errorf("Put info %+v, want size %d sha %s", info, len(data), hexSHA(data))
				}
				if got := readAll(t, s, key); !bytes.Equal(got, data) {
					t.Errorf("read back %d bytes (sha %s), want %d (sha %s)", len(got), hexSHA(got), len(data), hexSHA(data))
				}
			})
		}
	}

	t.Run("size mismatch stores nothing", func(t *testing.T) {
		for _, n := range []int{10, 2*partSize + 1} {
			data := randomBytes(n, 7)
			key := "mismatch.webm"
			if _, err := s.Put(ctx, key, bytes.NewReader(data), int64(n-1)); !errors.Is(err, store.ErrSizeMismatch) {
				t.Errorf("Put of %d bytes declared %d = %v, want ErrSizeMismatch", n, n-1, err)
			}
			if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Stat after refused Put = %v, want ErrNotFound", err)
			}
		}
	})

	t.Run("range, stat, list, delete", func(t *testing.T) {
		key := "patients/p2/consultations/c9/r.webm"
		data := []byte("abcdefghijklmnopqrstuvwxyz")
		if _, err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		rc, info, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Seek(20, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		tail, _ := io.ReadAll(rc)
		rc.Close()
		if string(tail) != "uvwxyz" || info.Size != 26 {
			t.Errorf("seek 20 read %q (size %d), want \"uvwxyz\" (26)", tail, info.Size)
		}
		if _, err := s.Put(ctx, "patients/p20/consultations/c1/x.webm", bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
		keys, err := s.List(ctx, "patients/p2/")
		if err != nil || !slices.Equal(keys, []string{key}) {
			t.Errorf("List(patients/p2/) = %q, %v; want only %q", keys, err, key)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
		}
		if _, _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get after Delete = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("second Delete = %v, want nil", err)
		}
		if _, err := s.Put(ctx, "../escape", bytes.NewReader(nil), 0); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Put(../escape) = %v, want ErrInvalidKey", err)
		}
	})

	t.Run("presigned URL works, then expires", func(t *testing.T) {
		key := "patients/p3/consultations/c1/v.webm"
		data := []byte("presigned body")
		if _, err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.PresignGet(ctx, "patients/p3/missing.webm", time.Minute); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PresignGet of a missing key = %v, want ErrNotFound", err)
		}
		long, ok, err := s.PresignGet(ctx, key, time.Hour)
		if err != nil || !ok {
			t.Fatalf("PresignGet: ok=%v err=%v", ok, err)
		}
		if u, _ := url.Parse(long); u.Query().Get("X-Amz-Expires") != "300" {
			t.Errorf("ttl of 1h gave X-Amz-Expires=%s, want 300 (capped)", u.Query().Get("X-Amz-Expires"))
		}
		u, _, err := s.PresignGet(ctx, key, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		code, body := httpGet(t, u)
		if code != http.StatusOK || body != string(data) {
			t.Fatalf("fresh presigned GET: %d %q, want 200 %q", code, body, data)
		}
		time.Sleep(2500 * time.Millisecond)
		if code, _ := httpGet(t, u); code != http.StatusForbidden {
			t.Errorf("expired presigned GET: status %d, want 403", code)
		}
	})
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// outageReader yields data and, once more than trigger bytes have been
// read, calls onTrigger exactly once. It cannot rewind, so a Put that
// restarted from the first byte would fail.
type outageReader struct {
	data      []byte
	off       int
	trigger   int
	onTrigger func()
	once      sync.Once
}

func (r *outageReader) Read(p []byte) (int, error) {
	if r.off > r.trigger {
		r.once.Do(r.onTrigger)
	}
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func TestS3UploadSurvivesOutage(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	s := openS3(t, srv, "outage", "&create=true",
		store.RetryPolicy{Attempts: 40, BaseDelay: 50 * time.Millisecond, MaxDelay: 500 * time.Millisecond})

	data := randomBytes(3*partSize+4321, 42)
	restarted := make(chan error, 1)
	var outage atomic.Bool
	r := &outageReader{data: data, trigger: partSize + 1, onTrigger: func() {
		outage.Store(true)
		// The first part(s) are stored; the server goes away while the
		// next part is read and comes back a little later.
		srv.Stop()
		go func() {
			time.Sleep(1500 * time.Millisecond)
			restarted <- srv.Restart()
		}()
	}}
	key := "patients/p1/consultations/c1/" + rid + ".webm"
	info, err := s.Put(ctx, key, r, int64(len(data)))
	if !outage.Load() {
		t.Fatalf("Put returned (%v) before the outage was staged; the test proved nothing", err)
	}
	if rerr := <-restarted; rerr != nil {
		t.Fatalf("restart minio: %v", rerr)
	}
	if err != nil {
		t.Fatalf("Put across an outage: %v", err)
	}
	if info.SHA256 != hexSHA(data) {
		t.Errorf("Put sha %s, want %s", info.SHA256, hexSHA(data))
	}
	got := readAll(t, s, key)
	if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != hexSHA(data) || len(got) != len(data) {
		t.Errorf("stored object is %d bytes, want %d whole", len(got), len(data))
	}
	keys, err := s.List(ctx, "")
	if err != nil || !slices.Equal(keys, []string{key}) {
		t.Errorf("bucket holds %q (%v), want exactly the one object", keys, err)
	}
	// The upload resumed rather than restarted: no second, abandoned
	// multipart upload is left behind.
	mc, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	for u := range mc.ListIncompleteUploads(ctx, "outage", "", true) {
		t.Errorf("incomplete upload left behind: %s (%v)", u.Key, u.Err)
	}
}

func TestS3StoreDownFailsBounded(t *testing.T) {
	srv := miniotest.Start(t)
	s := openS3(t, srv, "down", "&create=true",
		store.RetryPolicy{Attempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond})
	srv.Stop()
	start := time.Now()
	_, err := s.Put(context.Background(), "k.webm", bytes.NewReader([]byte("x")), 1)
	if err == nil {
		t.Fatal("Put with the store down succeeded")
	}
	if !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("Put with the store down = %v, want it to give up after 3 attempts", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Put with 3 attempts took %s; retries are not bounded", d)
	}
}

func TestS3RetryStopsWithContext(t *testing.T) {
	srv := miniotest.Start(t)
	s := openS3(t, srv, "down", "&create=true",
		store.RetryPolicy{Attempts: 1000, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second})
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Put(ctx, "k.webm", bytes.NewReader([]byte("x")), 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put with the store down and a 300ms context = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put kept retrying %s after its context ended", d)
	}
}
