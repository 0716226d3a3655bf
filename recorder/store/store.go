// Package store keeps recordings and their manifests in object storage: a
// local directory (the embedded default) or an S3-compatible service reached
// through minio-go.
//
// Keys are slash-separated and validated by [ValidateKey] before any store
// touches them; recording keys are built only by [RecordingKeys], so the
// patient scope of every object comes from one place.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Store is an object store for recordings and manifests. All methods are safe
// for concurrent use.
type Store interface {
	// Put streams r to key and returns the stored object's size and SHA-256.
	// size is the exact number of bytes r yields, or -1 when unknown; a
	// mismatch fails the Put and leaves no object behind. An existing object
	// under key is replaced only once the new one is complete.
	Put(ctx context.Context, key string, r io.Reader, size int64) (Info, error)

	// Get opens key for reading. The returned reader is seekable, so
	// http.ServeContent can serve byte ranges from it. The caller closes it.
	// A missing key yields an error matching ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadSeekCloser, Info, error)

	// Stat describes key without reading it. A missing key yields an error
	// matching ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)

	// List returns, in lexical order, every key that starts with prefix.
	// prefix is empty or a run of whole segments ending in "/".
	List(ctx context.Context, prefix string) ([]string, error)

	// Delete removes key. Deleting a missing key is not an error, so a
	// cleanup interrupted half-way can simply be run again.
	Delete(ctx context.Context, key string) error

	// PresignGet returns a URL that lets its holder GET key without
	// credentials for at most ttl (capped at MaxPresignTTL). ok is false for
	// stores that cannot presign (the local directory); serve the object
	// through Get instead.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (u string, ok bool, err error)
}

// Info describes a stored object.
type Info struct {
	// Key is the object's key.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// SHA256 is the lowercase hex SHA-256 of the object's bytes. Put fills it
	// (and, for S3, has checked it against a re-read of the stored object);
	// Get and Stat leave it empty because computing it needs a full read.
	SHA256 string
	// ModTime is when the object was last written.
	ModTime time.Time
}

// MaxPresignTTL is the longest lifetime of a presigned URL (DESIGN §6).
const MaxPresignTTL = 5 * time.Minute

// Errors reported by stores; check them with errors.Is.
var (
	// ErrNotFound means the key has no object.
	ErrNotFound = errors.New("store: object not found")
	// ErrInvalidKey means a key or prefix was refused by validation.
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrSizeMismatch means a Put's reader yielded a different number of
	// bytes than the size it was given.
	ErrSizeMismatch = errors.New("store: size mismatch")
	// ErrDigestMismatch means the object read back after an upload does not
	// have the SHA-256 (or size) of the bytes that were sent.
	ErrDigestMismatch = errors.New("store: digest mismatch after upload")
)

// Open opens the store named by rawURL:
//
//	file:///var/lib/medcall/objects     local directory (created 0700 if missing)
//	file://./medcall-data/objects       local directory, relative to the working dir
//	s3://bucket?endpoint=127.0.0.1:9000&secure=false&region=us-east-1
//
// S3 query parameters are listed on [S3Config] (see ParseS3URL). S3
// credentials come from MEDCALL_S3_ACCESS_KEY / MEDCALL_S3_SECRET_KEY, or else
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; credentials in the URL are
// refused because URLs end up in logs and process listings.
func Open(ctx context.Context, rawURL string) (Store, error) {
	return OpenLogged(ctx, rawURL, nil)
}

// OpenLogged is Open with the logger the store logs through (nil means
// slog.Default()), so its logs follow the server's --log-format and
// --log-level.
func OpenLogged(ctx context.Context, rawURL string, log *slog.Logger) (Store, error) {
	switch {
	case strings.HasPrefix(rawURL, "file://"):
		dir, _, _ := strings.Cut(strings.TrimPrefix(rawURL, "file://"), "?")
		if dir == "" {
			return nil, fmt.Errorf("store: %q names no directory; use file:///abs/path or file://./rel/path", rawURL)
		}
		return NewLocal(dir)
	case strings.HasPrefix(rawURL, "s3://"):
		cfg, err := ParseS3URL(rawURL)
		if err != nil {
			return nil, err
		}
		if err := cfg.credentialsFromEnv(); err != nil {
			return nil, err
		}
		cfg.Logger = log
		return NewS3(ctx, cfg)
	default:
		scheme := "(none)"
		if u, err := url.Parse(rawURL); err == nil && u.Scheme != "" {
			scheme = u.Scheme
		}
		return nil, fmt.Errorf("store: unsupported store URL scheme %s; use file://DIR or s3://BUCKET?endpoint=HOST:PORT", scheme)
	}
}
