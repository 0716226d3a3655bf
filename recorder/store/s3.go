package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures an S3-compatible store. ParseS3URL fills it from a
// store URL; the credentials are never part of a URL.
type S3Config struct {
	// Bucket holds every object.
	Bucket string
	// Endpoint is host[:port] of the S3 service (URL parameter endpoint;
	// default s3.amazonaws.com).
	Endpoint string
	// Secure selects HTTPS (URL parameter secure; default true).
	Secure bool
	// Region is the bucket's region (URL parameter region).
	Region string
	// AccessKey and SecretKey authenticate requests.
	AccessKey, SecretKey string
	// CreateBucket creates the bucket when it is missing (URL parameter
	// create=true); otherwise a missing bucket fails NewS3.
	CreateBucket bool
	// ObjectLock enables S3 Object Lock on a bucket that NewS3 creates (URL
	// parameter lock=true). It cannot be turned on for an existing bucket.
	ObjectLock bool
	// Retention, when positive, puts every new object under Object Lock
	// retention for this long (URL parameter retention, a Go duration such
	// as 8760h). The bucket must have Object Lock enabled.
	Retention time.Duration
	// RetentionMode is GOVERNANCE or COMPLIANCE (URL parameter
	// retention_mode); empty means the bucket's default mode, or GOVERNANCE.
	RetentionMode string
	// PartSize is the multipart part size in bytes (URL parameter
	// part_size; default and minimum 5 MiB; at most 5 GiB). One part is
	// buffered in memory per upload in progress.
	PartSize int64
	// Retry bounds retries of transient failures; zero means
	// DefaultRetryPolicy.
	Retry RetryPolicy
	// Logger receives the store's logs (the server's logger); nil means
	// slog.Default().
	Logger *slog.Logger
}

const (
	minPartSize = 5 << 20
	maxPartSize = 5 << 30
)

// ParseS3URL parses s3://BUCKET?endpoint=...&secure=...&region=...&create=...
// &lock=...&retention=...&retention_mode=...&part_size=... into an S3Config
// without credentials. Unknown parameters are refused so that a typo cannot
// silently drop a setting such as secure.
func ParseS3URL(rawURL string) (S3Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" {
		return S3Config{}, errors.New("store: malformed S3 store URL; use s3://BUCKET?endpoint=HOST:PORT&secure=false")
	}
	if u.User != nil {
		return S3Config{}, errors.New("store: S3 store URL carries credentials; remove them and set MEDCALL_S3_ACCESS_KEY and MEDCALL_S3_SECRET_KEY instead")
	}
	cfg := S3Config{Bucket: u.Host, Endpoint: "s3.amazonaws.com", Secure: true, PartSize: minPartSize}
	if cfg.Bucket == "" || (u.Path != "" && u.Path != "/") {
		return S3Config{}, fmt.Errorf("store: S3 store URL must name exactly one bucket (s3://BUCKET?...), got host %q path %q", u.Host, u.Path)
	}
	for name, vals := range u.Query() {
		v := vals[len(vals)-1]
		var perr error
		switch name {
		case "endpoint":
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "secure":
			cfg.Secure, perr = strconv.ParseBool(v)
		case "create":
			cfg.CreateBucket, perr = strconv.ParseBool(v)
		case "lock":
			cfg.ObjectLock, perr = strconv.ParseBool(v)
		case "retention":
			cfg.Retention, perr = time.ParseDuration(v)
		case "retention_mode":
			cfg.RetentionMode = strings.ToUpper(v)
		case "part_size":
			cfg.PartSize, perr = strconv.ParseInt(v, 10, 64)
		default:
			return S3Config{}, fmt.Errorf("store: unknown S3 store URL parameter %q; known: endpoint, secure, region, create, lock, retention, retention_mode, part_size", name)
		}
		if perr != nil {
			return S3Config{}, fmt.Errorf("store: S3 store URL parameter %s=%q: %w", name, v, perr)
		}
	}
	return cfg, nil
}

func (c *S3Config) credentialsFromEnv() error {
	c.AccessKey, c.SecretKey = os.Getenv("MEDCALL_S3_ACCESS_KEY"), os.Getenv("MEDCALL_S3_SECRET_KEY")
	if c.AccessKey == "" && c.SecretKey == "" {
		c.AccessKey, c.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return errors.New("store: no S3 credentials; set MEDCALL_S3_ACCESS_KEY and MEDCALL_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	}
	return nil
}

// S3 is a Store in one bucket of an S3-compatible service.
type S3 struct {
	cfg    S3Config
	client *minio.Client
	core   minio.Core
	// lockMode is the retention mode applied to new objects; empty when no
	// retention is applied.
	lockMode minio.RetentionMode
}

var _ Store = (*S3)(nil)

// NewS3 connects to the bucket in cfg, creating it when cfg.CreateBucket
// allows, and checks that retention, if asked for, can be applied.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.PartSize == 0 {
		cfg.PartSize = minPartSize
	}
	if cfg.PartSize < minPartSize || cfg.PartSize > maxPartSize {
		return nil, fmt.Errorf("store: S3 part size %d out of range; use %d..%d bytes", cfg.PartSize, minPartSize, maxPartSize)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("store: S3 store needs an access key and a secret key")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Retry.log = cfg.Logger
	if !cfg.Secure && !isLoopback(cfg.Endpoint) {
		cfg.Logger.Warn("store: S3 endpoint is not loopback and secure=false; recordings cross the network unencrypted", "endpoint", cfg.Endpoint)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
		// Our own RetryPolicy retries whole operations with backoff; letting
		// minio-go retry inside each attempt as well would multiply waits.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("store: S3 client for endpoint %s: %w", cfg.Endpoint, err)
	}
	s := &S3{cfg: cfg, client: client, core: minio.Core{Client: client}}
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	if err := s.configureRetention(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *S3) ensureBucket(ctx context.Context) error {
	var exists bool
	err := s.cfg.Retry.do(ctx, "check bucket", func() (err error) {
		exists, err = s.client.BucketExists(ctx, s.cfg.Bucket)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: check S3 bucket %s at %s: %w; is the endpoint reachable and are the credentials right?", s.cfg.Bucket, s.cfg.Endpoint, err)
	}
	if exists {
		return nil
	}
	if !s.cfg.CreateBucket {
		return fmt.Errorf("store: S3 bucket %s does not exist; create it or add create=true to the store URL", s.cfg.Bucket)
	}
	err = s.cfg.Retry.do(ctx, "create bucket", func() error {
		err := s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region, ObjectLocking: s.cfg.ObjectLock})
		if code := s3Code(err); code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil // created concurrently by another instance
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create S3 bucket %s: %w", s.cfg.Bucket, err)
	}
	s.cfg.Logger.Info("store: created S3 bucket", "bucket", s.cfg.Bucket, "object_lock", s.cfg.ObjectLock)
	return nil
}

func (s *S3) configureRetention(ctx context.Context) error {
	var enabled string
	var mode *minio.RetentionMode
	err := s.cfg.Retry.do(ctx, "read object lock configuration", func() (err error) {
		enabled, mode, _, _, err = s.client.GetObjectLockConfig(ctx, s.cfg.Bucket)
		if s3Code(err) == "ObjectLockConfigurationNotFoundError" {
			enabled, err = "", nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: read Object Lock configuration of bucket %s: %w", s.cfg.Bucket, err)
	}
	locked := enabled == "Enabled"
	if s.cfg.Retention <= 0 {
		return nil
	}
	if !locked {
		return fmt.Errorf("store: retention %s requested but bucket %s has no Object Lock; use a bucket created with Object Lock (lock=true&create=true for a new one) or drop the retention parameter", s.cfg.Retention, s.cfg.Bucket)
	}
	switch {
	case s.cfg.RetentionMode != "":
		s.lockMode = minio.RetentionMode(s.cfg.RetentionMode)
	case mode != nil && mode.IsValid():
		s.lockMode = *mode
	default:
		s.lockMode = minio.Governance
	}
	if !s.lockMode.IsValid() {
		return fmt.Errorf("store: retention mode %q is not GOVERNANCE or COMPLIANCE", s.cfg.RetentionMode)
	}
	return nil
}

// Get opens key. The *minio.Object it returns fetches lazily and supports
// Seek and ReadAt.
func (s *S3) Get(ctx context.Context, key string) (io.ReadSeekCloser, Info, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, Info{}, err
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, s.mapErr("get", key, err)
	}
	return obj, info, nil
}

// Stat describes key.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	var oi minio.ObjectInfo
	err := s.cfg.Retry.do(ctx, "stat "+key, func() (err error) {
		oi, err = s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return Info{}, s.mapErr("stat", key, err)
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// List returns the keys under prefix in lexical order.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	var keys []string
	err := s.cfg.Retry.do(ctx, "list "+prefix, func() error {
		keys = keys[:0]
		for oi := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if oi.Err != nil {
				return oi.Err
			}
			keys = append(keys, oi.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %q in bucket %s: %w", prefix, s.cfg.Bucket, err)
	}
	sort.Strings(keys)
	return keys, nil
}

// Delete removes key; a missing key is not an error. Objects under Object
// Lock retention cannot be deleted until it ends.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	err := s.cfg.Retry.do(ctx, "delete "+key, func() error {
		return s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{})
	})
	if err != nil && !errors.Is(s.mapErr("delete", key, err), ErrNotFound) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return nil
}

// PresignGet returns a presigned GET URL for key valid for ttl, capped at
// MaxPresignTTL. It checks that key exists first, so a URL is never handed
// out for a missing object.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if ttl <= 0 {
		return "", true, fmt.Errorf("store: presign %s: ttl %s must be positive", key, ttl)
	}
	ttl = min(ttl, MaxPresignTTL)
	if _, err := s.Stat(ctx, key); err != nil {
		return "", true, err
	}
	u, err := s.client.PresignedGetObject(ctx, s.cfg.Bucket, key, ttl, nil)
	if err != nil {
		return "", true, fmt.Errorf("store: presign %s: %w", key, err)
	}
	return u.String(), true, nil
}

func (s *S3) mapErr(op, key string, err error) error {
	switch s3Code(err) {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w: %s %s", ErrNotFound, op, key)
	}
	return fmt.Errorf("store: %s %s in bucket %s: %w", op, key, s.cfg.Bucket, err)
}

// s3Code returns the S3 error code anywhere in err's chain, or "".
func s3Code(err error) string {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code
	}
	return ""
}

func isLoopback(endpoint string) bool {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		host = endpoint
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
