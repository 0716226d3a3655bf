package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/recorder/store/miniotest"
)

// TestS3ErasureSurvivesDriveLoss: MinIO erasure-codes objects across four
// drives; recordings are uploaded while one drive is lost in the middle of
// an upload. Every upload completes, and every object reads back whole with
// the SHA-256 Put reported (through a new client) with the drive still gone.
func TestS3ErasureSurvivesDriveLoss(t *testing.T) {
	d := miniotest.StartErasure(t, 4)
	s := openS3(t, d.Server, "erasure", "&create=true",
		store.RetryPolicy{Attempts: 40, BaseDelay: 50 * time.Millisecond, MaxDelay: 500 * time.Millisecond})
	const objects = 6
	var (
		wg     sync.WaitGroup
		killed atomic.Bool
		keys   = make([]string, objects)
		datas  = make([][]byte, objects)
		errs   = make([]error, objects)
		infos  = make([]store.Info, objects)
	)
	for i := range objects {
		datas[i] = randomBytes(2*partSize+1000*i+7, uint64(i+1))
		keys[i] = fmt.Sprintf("patients/p%d/consultations/c%d/%s.webm", i, i, rid)
		r := &outageReader{data: datas[i], trigger: partSize + 1, onTrigger: func() {
			if i == 2 && killed.CompareAndSwap(false, true) {
				if err := d.LoseDrive(3); err != nil { // a disk fails mid-upload
					t.Error(err)
				}
			}
		}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i], errs[i] = s.Put(context.Background(), keys[i], r, int64(len(datas[i])))
		}()
	}
	wg.Wait()
	if !killed.Load() {
		t.Fatal("no drive was lost during the uploads; the test proved nothing")
	}
	for i := range objects {
		if errs[i] != nil {
			t.Errorf("upload %d with a drive lost: %v", i, errs[i])
			continue
		}
		if infos[i].SHA256 != hexSHA(datas[i]) {
			t.Errorf("upload %d: Put sha %s, want %s", i, infos[i].SHA256, hexSHA(datas[i]))
		}
	}
	// Striped, not copied to one place: every surviving drive holds a shard
	// of every object (its xl.meta), and the lost drive held the first ones.
	for i := range objects {
		for _, drive := range d.Drives[:3] {
			if _, err := os.Stat(filepath.Join(drive, "erasure", keys[i], "xl.meta")); err != nil {
				t.Errorf("object %d has no shard on %s: %v", i, filepath.Base(drive), err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(d.Drives[3]+".lost", ".minio.sys", "format.json")); err != nil {
		t.Errorf("the lost drive was not one of the server's drives: %v", err)
	}
	other := openS3(t, d.Server, "erasure", "", store.RetryPolicy{Attempts: 3, BaseDelay: 50 * time.Millisecond})
	for i := range objects {
		got := readAll(t, other, keys[i])
		if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != hexSHA(datas[i]) {
			t.Errorf("object %d reads back as %d bytes that do not match what was uploaded", i, len(got))
		}
	}
}
