package miniotest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Erasure is a MinIO server whose objects are erasure-coded across several
// drives (directories), so it survives losing one of them (>= 4 drives:
// MinIO's default parity then leaves a write quorum with one drive gone).
//
// MinIO refuses to form a multi-process deployment from loopback endpoints
// when it detects a container (/.dockerenv, /run/.containerenv): it waits
// for "localhost" to resolve to another address. So the test deployment is
// one process with n drives; a drive is lost by taking its directory away,
// as a failed disk is.
type Erasure struct {
	*Server
	// Drives are the drive directories, in order.
	Drives []string
}

// StartErasure launches one MinIO server over n drives and waits until it
// is healthy. It is stopped when t ends.
func StartErasure(t testing.TB, n int) *Erasure {
	t.Helper()
	e := &Erasure{}
	root := t.TempDir()
	for i := range n {
		e.Drives = append(e.Drives, filepath.Join(root, fmt.Sprintf("drive%d", i)))
	}
	e.Server = startWith(t, e.Drives)
	return e
}

// LoseDrive takes drive i away under the running server (its directory is
// moved aside), as a failed disk would be.
func (e *Erasure) LoseDrive(i int) error {
	return os.Rename(e.Drives[i], e.Drives[i]+".lost")
}
