package miniotest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Erasure is a MinIO server whose objects are erasure-coded across several
// drives (directories), so it survives losing one of them (>= 4 drives:
// MinIO's default parity then leaves a write quorum with one drive gone).
//
// It is one process with n drives; a drive is lost by taking its directory
// away, as a failed disk is. Distributed runs several processes.
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

// Distributed is a MinIO deployment of several server processes (nodes) on
// loopback forming one erasure set over every node's drives, as the
// Kubernetes StatefulSet in deploy/kubernetes runs it. Any node serves the
// whole set; with MinIO's default parity it keeps writing with one node (or
// one drive of another node) gone.
//
// MinIO tells its own endpoints from its peers' by address and port. In a
// container (/.dockerenv, /run/.containerenv, KUBERNETES_SERVICE_HOST) it
// distrusts loopback instead: a peer whose host resolves to 127.0.0.1
// "resolves to localhost in a containerized deployment" and is waited for
// forever. There, each node is told which endpoint is its own through
// _MINIO_SERVER_LOCAL (read by cmd/endpoint.go's UpdateIsLocal of the MinIO
// version deploy/minio.sh pins), and every other one is a peer. Outside a
// container the variable is ignored and the ports tell the nodes apart.
type Distributed struct {
	// Nodes are the server processes; each one's Endpoint serves the set.
	Nodes []*Server
	// Drives are the drive directories of each node, in order.
	Drives [][]string
}

// StartDistributed launches nodes MinIO processes with drives drives each,
// all in one erasure set, and waits until every node reports the set
// writable (/minio/health/cluster). They are stopped when t ends.
func StartDistributed(t testing.TB, nodes, drives int) *Distributed {
	t.Helper()
	bin := Binary(t)
	var key [16]byte
	_, _ = rand.Read(key[:])
	secret := hex.EncodeToString(key[:])
	var err error
	for range 3 { // a port found free can be taken before its node binds it
		var d *Distributed
		if d, err = launchDistributed(t, bin, secret, nodes, drives); err == nil {
			return d
		}
	}
	t.Fatalf("start distributed minio: %v", err)
	return nil
}

func launchDistributed(t testing.TB, bin, secret string, nodes, drives int) (*Distributed, error) {
	d := &Distributed{}
	var urls []string
	taken := map[string]bool{}
	for range nodes {
		ep, err := freePort()
		for err == nil && taken[ep] {
			ep, err = freePort()
		}
		if err != nil {
			return nil, err
		}
		taken[ep] = true
		s := &Server{Endpoint: ep, AccessKey: "medcall-test", SecretKey: secret, DataDir: t.TempDir(), t: t, bin: bin,
			env: []string{"_MINIO_SERVER_LOCAL=" + ep}, probes: []string{"/minio/health/live", "/minio/health/cluster"}}
		var dirs []string
		for j := range drives {
			dir := filepath.Join(s.DataDir, fmt.Sprintf("drive%d", j))
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, err
			}
			dirs = append(dirs, dir)
			urls = append(urls, "http://"+ep+dir) // one list, no ellipses: one pool
		}
		d.Nodes, d.Drives = append(d.Nodes, s), append(d.Drives, dirs)
	}
	for _, s := range d.Nodes {
		s.volumes = urls
		t.Cleanup(s.Stop)
		if err := s.launch(); err != nil {
			d.stop()
			return nil, err
		}
	}
	for _, s := range d.Nodes {
		if err := s.await(); err != nil {
			d.stop()
			return nil, err
		}
	}
	return d, nil
}

// Kill ends node i with SIGKILL, as a crashed machine or evicted pod ends.
func (d *Distributed) Kill(i int) { d.Nodes[i].Stop() }

// LoseDrive takes drive j of node i away under the running node, as a
// failed disk would be.
func (d *Distributed) LoseDrive(i, j int) error {
	return os.Rename(d.Drives[i][j], d.Drives[i][j]+".lost")
}

func (d *Distributed) stop() {
	for _, s := range d.Nodes {
		s.Stop()
	}
}
