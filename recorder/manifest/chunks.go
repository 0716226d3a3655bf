package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// DefaultChunkSize is the chunk length the recorder signs digests for: small
// enough that a Range request checks little more than it serves, large
// enough that a one-hour recording needs only a few hundred digests.
const DefaultChunkSize = 1 << 20

// Bounds on a signed chunk size, so a manifest cannot make a reader buffer
// gigabytes or list millions of digests.
const (
	MinChunkSize = 1 << 10
	MaxChunkSize = 64 << 20
)

// Chunks are the SHA-256 digests of consecutive fixed-size pieces of the
// WebM object, inside the signed predicate, so a reader can prove any byte
// range it serves is what was signed by hashing only the chunks it touches.
type Chunks struct {
	// Size is the length of every chunk but the last, in bytes.
	Size int64 `json:"size"`
	// SHA256 lists each chunk's digest (lowercase hex), in order; the last
	// chunk holds the remaining 1..Size bytes.
	SHA256 []string `json:"sha256"`
}

// ComputeChunks reads r to its end and returns its chunk digests for chunks
// of size bytes, and the number of bytes read.
func ComputeChunks(r io.Reader, size int64) (*Chunks, int64, error) {
	if size < MinChunkSize || size > MaxChunkSize {
		return nil, 0, fmt.Errorf("manifest: chunk size %d outside [%d, %d]", size, MinChunkSize, MaxChunkSize)
	}
	c := &Chunks{Size: size, SHA256: []string{}}
	buf := make([]byte, size)
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			sum := sha256.Sum256(buf[:n])
			c.SHA256 = append(c.SHA256, hex.EncodeToString(sum[:]))
			total += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return c, total, nil
		}
		if err != nil {
			return nil, total, fmt.Errorf("manifest: chunk digests: %w", err)
		}
	}
}

// Count is how many chunks an object of n bytes has.
func (c *Chunks) Count(n int64) int64 { return (n + c.Size - 1) / c.Size }

// Digest returns chunk i's digest as bytes; ok is false when i is out of
// range or the digest is not 64 hex digits.
func (c *Chunks) Digest(i int64) (sum [32]byte, ok bool) {
	if i < 0 || i >= int64(len(c.SHA256)) {
		return sum, false
	}
	b, err := hex.DecodeString(c.SHA256[i])
	if err != nil || len(b) != 32 {
		return sum, false
	}
	copy(sum[:], b)
	return sum, true
}

// check reports whether c fits an object of n bytes; nil c (a manifest from
// before chunk digests) is fine: such objects are checked whole.
func (c *Chunks) check(n int64) error {
	if c == nil {
		return nil
	}
	if c.Size < MinChunkSize || c.Size > MaxChunkSize {
		return fmt.Errorf("%w: chunk size %d outside [%d, %d]", ErrMalformed, c.Size, MinChunkSize, MaxChunkSize)
	}
	if int64(len(c.SHA256)) != c.Count(n) {
		return fmt.Errorf("%w: %d chunk digests for %d bytes in chunks of %d", ErrMalformed, len(c.SHA256), n, c.Size)
	}
	for i, s := range c.SHA256 {
		if b, err := hex.DecodeString(s); err != nil || len(b) != 32 || hex.EncodeToString(b) != s {
			return fmt.Errorf("%w: chunk %d digest %q is not 64 lowercase hex digits", ErrMalformed, i, s)
		}
	}
	return nil
}
