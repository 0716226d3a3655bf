package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

func TestComputeChunks(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 250) // 2500 bytes: chunks 1024, 1024, 452
	c, n, err := ComputeChunks(bytes.NewReader(data), 1024)
	if err != nil || n != 2500 {
		t.Fatalf("ComputeChunks = %v, %d", err, n)
	}
	if len(c.SHA256) != 3 || c.Count(n) != 3 {
		t.Fatalf("%d digests, Count %d; want 3", len(c.SHA256), c.Count(n))
	}
	for i, part := range [][]byte{data[:1024], data[1024:2048], data[2048:]} {
		sum := sha256.Sum256(part)
		if c.SHA256[i] != hex.EncodeToString(sum[:]) {
			t.Errorf("chunk %d digest differs", i)
		}
		if d, ok := c.Digest(int64(i)); !ok || d != sum {
			t.Errorf("Digest(%d) = %x, %v", i, d, ok)
		}
	}
	if _, ok := c.Digest(3); ok {
		t.Error("Digest past the end accepted")
	}
	if err := c.check(2500); err != nil {
		t.Errorf("check: %v", err)
	}
	for _, bad := range []struct {
		name string
		c    *Chunks
		n    int64
	}{
		{"one digest short", &Chunks{Size: 1024, SHA256: c.SHA256[:2]}, 2500},
		{"chunks tiny", &Chunks{Size: 1, SHA256: c.SHA256}, 3},
		{"upper-case hex", &Chunks{Size: 1024, SHA256: []string{"AB" + c.SHA256[0][2:]}}, 10},
	} {
		if err := bad.c.check(bad.n); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: check = %v, want ErrMalformed", bad.name, err)
		}
	}
	if empty, n, err := ComputeChunks(bytes.NewReader(nil), 1024); err != nil || n != 0 || len(empty.SHA256) != 0 || empty.check(0) != nil {
		t.Errorf("empty object: %+v %d %v", empty, n, err)
	}
	if _, _, err := ComputeChunks(bytes.NewReader(data), 10); err == nil {
		t.Error("chunk size 10 accepted")
	}
}
