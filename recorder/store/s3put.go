package store

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"time"

	"github.com/minio/minio-go/v7"
)

// maxParts is the S3 limit on parts in one multipart upload.
const maxParts = 10000

// Put streams r to key. The bytes are cut into parts of cfg.PartSize, each
// buffered in memory only until it is stored, so a part that fails is sent
// again without re-reading r and parts already stored are kept: an outage
// of the service mid-upload costs at most the retry waits. An object smaller
// than one part is sent as a single PUT. Each part carries its MD5 and
// SHA-256 so the service rejects damaged parts; when the upload completes,
// the object is read back and its SHA-256 and size compared with what was
// sent (ErrDigestMismatch if they differ).
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	bufSize := s.cfg.PartSize
	if size >= 0 && size < bufSize {
		bufSize = size + 1
	}
	if size >= 0 {
		r = io.LimitReader(r, size+1) // one byte more reveals a reader longer than size
	}
	src := &hashingReader{r: ctxReader{ctx, r}, h: sha256.New()}
	buf := make([]byte, bufSize)
	n, last, err := readPart(src, buf)
	if err != nil {
		return Info{}, fmt.Errorf("store: put %s: read: %w", key, err)
	}
	opts := s.putOptions(key)
	if last || (size >= 0 && int64(n) > size) {
		if err := checkSize(key, src.n, size); err != nil {
			return Info{}, err
		}
		err = s.cfg.Retry.do(ctx, "put "+key, func() error {
			part := buf[:n]
			_, err := s.core.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(part), int64(n), md5b64(part), sha256hex(part), opts)
			return err
		})
		if err != nil {
			return Info{}, fmt.Errorf("store: put %s in bucket %s: %w", key, s.cfg.Bucket, err)
		}
	} else if err := s.putMultipart(ctx, key, src, buf, n, size, opts); err != nil {
		return Info{}, err
	}
	sum := hex.EncodeToString(src.h.Sum(nil))
	oi, err := s.verify(ctx, key, sum, src.n)
	if err != nil {
		return Info{}, err
	}
	return Info{Key: key, Size: src.n, SHA256: sum, ModTime: oi.LastModified}, nil
}

func (s *S3) putMultipart(ctx context.Context, key string, src *hashingReader, buf []byte, n int, size int64, opts minio.PutObjectOptions) error {
	var uploadID string
	err := s.cfg.Retry.do(ctx, "start upload "+key, func() (err error) {
		uploadID, err = s.core.NewMultipartUpload(ctx, s.cfg.Bucket, key, opts)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: put %s: start multipart upload in bucket %s: %w", key, s.cfg.Bucket, err)
	}
	completed := false
	defer func() {
		if completed {
			return
		}
		// Abort even when ctx is done, so the service frees the parts.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = s.core.AbortMultipartUpload(actx, s.cfg.Bucket, key, uploadID)
	}()

	var parts []minio.CompletePart
	last := false
	for num := 1; ; num++ {
		if num > maxParts {
			return fmt.Errorf("store: put %s: more than %d parts of %d bytes; raise part_size", key, maxParts, s.cfg.PartSize)
		}
		part := buf[:n]
		popts := minio.PutObjectPartOptions{Md5Base64: md5b64(part), Sha256Hex: sha256hex(part)}
		var op minio.ObjectPart
		err := s.cfg.Retry.do(ctx, fmt.Sprintf("put %s part %d", key, num), func() (err error) {
			op, err = s.core.PutObjectPart(ctx, s.cfg.Bucket, key, uploadID, num, bytes.NewReader(part), int64(n), popts)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: put %s: upload part %d: %w", key, num, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: num, ETag: op.ETag})

		if last {
			break
		}
		if n, last, err = readPart(src, buf); err != nil {
			return fmt.Errorf("store: put %s: read: %w", key, err)
		}
		if n == 0 {
			break
		}
	}
	if err := checkSize(key, src.n, size); err != nil {
		return err
	}
	tries := 0
	err = s.cfg.Retry.do(ctx, "complete upload "+key, func() error {
		tries++
		_, err := s.core.CompleteMultipartUpload(ctx, s.cfg.Bucket, key, uploadID, parts, minio.PutObjectOptions{})
		if err != nil && tries > 1 && s3Code(err) == "NoSuchUpload" {
			// An earlier try completed the upload but its reply was lost;
			// the read-back in verify decides whether the object is whole.
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: put %s: complete multipart upload: %w", key, err)
	}
	completed = true
	return nil
}

func (s *S3) putOptions(key string) minio.PutObjectOptions {
	opts := minio.PutObjectOptions{ContentType: contentType(key)}
	if s.lockMode != "" {
		opts.Mode = s.lockMode
		opts.RetainUntilDate = time.Now().Add(s.cfg.Retention)
	}
	return opts
}

// verify reads key back and checks it has the size and SHA-256 that were
// sent.
func (s *S3) verify(ctx context.Context, key, wantSHA string, wantSize int64) (minio.ObjectInfo, error) {
	var oi minio.ObjectInfo
	var got string
	var n int64
	err := s.cfg.Retry.do(ctx, "verify "+key, func() error {
		obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		h := sha256.New()
		if n, err = io.Copy(h, obj); err != nil {
			return err
		}
		if oi, err = obj.Stat(); err != nil {
			return err
		}
		got = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		return oi, fmt.Errorf("store: put %s: read back for verification: %w; the upload is not confirmed, retry the Put", key, err)
	}
	if got != wantSHA || n != wantSize {
		return oi, fmt.Errorf("%w: %s in bucket %s holds %d bytes sha256 %s, sent %d bytes sha256 %s; retry the Put and keep the source",
			ErrDigestMismatch, key, s.cfg.Bucket, n, got, wantSize, wantSHA)
	}
	return oi, nil
}

// readPart fills buf from r. last is true when r is exhausted.
func readPart(r io.Reader, buf []byte) (n int, last bool, err error) {
	n, err = io.ReadFull(r, buf)
	switch {
	case err == nil:
		return n, false, nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return n, true, nil
	default:
		return n, false, err
	}
}

func checkSize(key string, got, want int64) error {
	if want >= 0 && got != want {
		return fmt.Errorf("%w: put %s: reader gave %d bytes, caller declared %d; nothing was stored", ErrSizeMismatch, key, got, want)
	}
	return nil
}

func contentType(key string) string {
	switch path.Ext(key) {
	case ".webm":
		return "video/webm"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}

func md5b64(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hashingReader hashes and counts what passes through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	return n, err
}
