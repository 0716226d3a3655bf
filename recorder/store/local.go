package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"
)

const tmpPrefix = ".tmp-"

// Local is a Store in a local directory. Every file operation goes through
// an os.Root, so neither a crafted key nor a symlink planted inside the
// directory can reach a file outside it. Files are created 0600 and
// directories 0700: recordings are health data.
type Local struct {
	dir  string
	root *os.Root
}

var _ Store = (*Local)(nil)

// NewLocal opens (creating if needed) the directory dir as a Store.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create local store directory %s: %w; check the --store path and its permissions", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("store: open local store directory %s: %w", dir, err)
	}
	return &Local{dir: dir, root: root}, nil
}

// Close releases the directory handle. The Local must not be used after.
func (l *Local) Close() error { return l.root.Close() }

// Put writes r to key atomically: the bytes go to a temporary file in the
// key's directory, which is synced, renamed over key, and the directory is
// synced, so after a crash key holds either the old object or the whole new
// one.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, size int64) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	dir := path.Dir(key)
	if err := l.root.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("store: put %s: create directory: %w", key, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	tmp := path.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := l.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Info{}, fmt.Errorf("store: put %s: create temporary file: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = l.root.Remove(tmp)
		}
	}()

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err != nil {
		return Info{}, fmt.Errorf("store: put %s: write: %w", key, err)
	}
	if size >= 0 && n != size {
		return Info{}, fmt.Errorf("%w: put %s: reader gave %d bytes, caller declared %d; nothing was stored", ErrSizeMismatch, key, n, size)
	}
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("store: put %s: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("store: put %s: close: %w", key, err)
	}
	if err := l.root.Rename(tmp, key); err != nil {
		return Info{}, fmt.Errorf("store: put %s: rename into place: %w", key, err)
	}
	committed = true
	if err := l.syncDir(dir); err != nil {
		return Info{}, fmt.Errorf("store: put %s: sync directory: %w", key, err)
	}
	fi, err := l.root.Stat(key)
	if err != nil {
		return Info{}, fmt.Errorf("store: put %s: stat after write: %w", key, err)
	}
	return Info{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), ModTime: fi.ModTime()}, nil
}

func (l *Local) syncDir(dir string) error {
	d, err := l.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get opens key. The *os.File it returns supports Seek and ReadAt, so
// http.ServeContent serves ranges from it.
func (l *Local) Get(ctx context.Context, key string) (io.ReadSeekCloser, Info, error) {
	if err := ValidateKey(key); err != nil {
		return nil, Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Info{}, err
	}
	f, err := l.root.Open(key)
	if err != nil {
		return nil, Info{}, l.mapErr("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, fmt.Errorf("store: get %s: stat: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, Info{}, fmt.Errorf("%w: get %s: not a regular file", ErrNotFound, key)
	}
	return f, Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Stat describes key.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := l.root.Stat(key)
	if err != nil {
		return Info{}, l.mapErr("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("%w: stat %s: not a regular file", ErrNotFound, key)
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List returns the keys under prefix in lexical order. Temporary files of
// Puts in progress are never listed.
func (l *Local) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	start := "."
	if prefix != "" {
		start = strings.TrimSuffix(prefix, "/")
	}
	var keys []string
	err := fs.WalkDir(l.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != start {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			keys = append(keys, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %q: %w", prefix, err)
	}
	sort.Strings(keys)
	return keys, nil
}

// Delete removes key; a missing key is not an error.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if err := l.syncDir(path.Dir(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: delete %s: sync directory: %w", key, err)
	}
	return nil
}

// PresignGet reports ok=false: a local directory has no URLs to presign.
func (l *Local) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	return "", false, ValidateKey(key)
}

func (l *Local) mapErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %s %s", ErrNotFound, op, key)
	}
	return fmt.Errorf("store: %s %s: %w", op, key, err)
}

// ctxReader stops a long copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
