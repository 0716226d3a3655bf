package recorder

import (
	"fmt"
	"os"

	"github.com/medcall/medcall/recorder/manifest"
)

// addChunkDigests puts the per-chunk digests of the WebM file at path into
// stmt's predicate before it is signed, so replay can check every byte it
// serves. The file must be the one uploaded: its length must be the signed
// size.
func addChunkDigests(stmt *manifest.Statement, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("chunk digests: %w", err)
	}
	defer f.Close()
	c, n, err := manifest.ComputeChunks(f, manifest.DefaultChunkSize)
	if err != nil {
		return fmt.Errorf("chunk digests of %s: %w", path, err)
	}
	if n != stmt.Predicate.SizeBytes {
		return fmt.Errorf("chunk digests of %s: %d bytes, but %d were uploaded; will retry", path, n, stmt.Predicate.SizeBytes)
	}
	stmt.Predicate.Chunks = c
	return nil
}
