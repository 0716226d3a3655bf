package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/store"
)

func newLocal(t *testing.T) (*store.Local, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "objects")
	l, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestLocalPutGetStat(t *testing.T) {
	ctx := context.Background()
	l, dir := newLocal(t)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	key := "patients/p1/consultations/c1/" + rid + ".webm"

	info, err := l.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) || info.SHA256 != hexSHA(data) || info.Key != key {
		t.Errorf("Put info = %+v, want size %d sha %s", info, len(data), hexSHA(data))
	}
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("object file mode = %o, want 600", perm)
	}

	st, err := l.Stat(ctx, key)
	if err != nil || st.Size != int64(len(data)) {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	rc, gi, err := l.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || gi.Size != int64(len(data)) {
		t.Errorf("Get returned %d bytes (info %+v, err %v), want the %d bytes put", len(got), gi, err, len(data))
	}

	// Unknown size and overwrite.
	data2 := []byte("second version")
	if _, err := l.Put(ctx, key, bytes.NewReader(data2), -1); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.Stat(ctx, key); st.Size != int64(len(data2)) {
		t.Errorf("after overwrite size = %d, want %d", st.Size, len(data2))
	}
}

func TestLocalRangeServing(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	data := []byte("abcdefghijklmnopqrstuvwxyz")
	if _, err := l.Put(ctx, "a/b.webm", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rc, info, err := l.Get(ctx, "a/b.webm")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("Range", "bytes=3-7")
	rec := httptest.NewRecorder()
	http.ServeContent(rec, req, "b.webm", info.ModTime, rc)
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "defgh" {
		t.Errorf("range 3-7: status %d body %q, want 206 \"defgh\"", rec.Code, rec.Body.String())
	}
	if cr := rec.Header().Get("Content-Range"); cr != "bytes 3-7/26" {
		t.Errorf("Content-Range = %q", cr)
	}
}

// failingReader yields some bytes, then an error, like a spool read that
// fails half-way.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk read error")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

func TestLocalPutIsAtomic(t *testing.T) {
	ctx := context.Background()
	l, dir := newLocal(t)
	key := "p/obj.webm"
	if _, err := l.Put(ctx, key, strings.NewReader("old"), 3); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    io.Reader
		size int64
		want error
	}{
		{"reader fails", &failingReader{n: 1 << 16}, -1, nil},
		{"shorter than declared", strings.NewReader("12345"), 6, store.ErrSizeMismatch},
		{"longer than declared", strings.NewReader("1234567"), 6, store.ErrSizeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Put(ctx, key, tt.r, tt.size)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Put = %v, want error %v", err, tt.want)
			}
			rc, _, err := l.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "old" {
				t.Errorf("after failed Put object = %q, want the old %q", got, "old")
			}
			entries, _ := os.ReadDir(filepath.Join(dir, "p"))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries after failed Put, want 1 (temp file left behind?)", len(entries))
			}
		})
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Put(cctx, "p/other", strings.NewReader("x"), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestLocalListDelete(t *testing.T) {
	ctx := context.Background()
	l, dir := newLocal(t)
	keys := []string{
		"patients/p1/consultations/c1/a.webm",
		"patients/p1/consultations/c1/a.manifest.json",
		"patients/p1/consultations/c2/b.webm",
		"patients/p10/consultations/c1/x.webm",
		"patients/p2/consultations/c1/y.webm",
	}
	for _, k := range keys {
		if _, err := l.Put(ctx, k, strings.NewReader(k), -1); err != nil {
			t.Fatal(err)
		}
	}
	// A Put in progress leaves a hidden temp file; it must never be listed.
	if err := os.WriteFile(filepath.Join(dir, "patients/p1/consultations/c1/.tmp-abc"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"patients/p1/", []string{keys[1], keys[0], keys[2]}},
		{"patients/p1/consultations/c2/", []string{keys[2]}},
		{"patients/p3/", nil},
		{"", slices.Sorted(slices.Values(keys))},
	}
	for _, tt := range tests {
		got, err := l.List(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tt.prefix, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}

	if err := l.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Stat(ctx, keys[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if _, _, err := l.Get(ctx, keys[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := l.Delete(ctx, keys[0]); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if _, err := l.Stat(ctx, "patients/p1/consultations/c1/a.webm/deeper"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat below a file = %v, want ErrNotFound", err)
	}
	if _, ok, err := l.PresignGet(ctx, keys[1], time.Minute); ok || err != nil {
		t.Errorf("local PresignGet ok=%v err=%v, want ok=false", ok, err)
	}
}

func TestLocalRefusesEscapes(t *testing.T) {
	ctx := context.Background()
	l, dir := newLocal(t)
	outside := filepath.Join(filepath.Dir(dir), "secret")
	if err := os.WriteFile(outside, []byte("other patient"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"../secret", "/" + outside, `..\secret`, "a/../../secret", "a//b", "a/\x00"} {
		if _, err := l.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, _, err := l.Get(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := l.Delete(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	// A symlink planted inside the root must not lead outside it.
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if rc, _, err := l.Get(ctx, "link"); err == nil {
		rc.Close()
		t.Error("Get through a symlink to outside the root succeeded")
	}
	if err := os.Symlink(filepath.Dir(dir), filepath.Join(dir, "up")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Put(ctx, "up/secret", strings.NewReader("overwritten"), -1); err == nil {
		t.Error("Put through a symlinked directory to outside the root succeeded")
	}
	if b, _ := os.ReadFile(outside); string(b) != "other patient" {
		t.Errorf("file outside the root changed to %q", b)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "file://"+dir+"/objects")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "k")); err != nil {
		t.Errorf("file:// store did not write under its directory: %v", err)
	}
	for _, bad := range []string{"", "file://", "ftp://x", "s3://user:pw@bucket?endpoint=x", "s3://bucket?endpont=x", "s3://bucket?secure=maybe"} {
		if _, err := store.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", bad)
		}
	}
	t.Setenv("MEDCALL_S3_ACCESS_KEY", "")
	t.Setenv("MEDCALL_S3_SECRET_KEY", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := store.Open(ctx, "s3://bucket?endpoint=127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "MEDCALL_S3_ACCESS_KEY") {
		t.Errorf("Open without credentials = %v, want an error naming MEDCALL_S3_ACCESS_KEY", err)
	}
}
