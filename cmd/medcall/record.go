package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
)

// version is written into every manifest as the recorder version.
const version = "medcall/0.1.0"

// recordConfig is the recording part of the configuration, shared by serve and recover.
type recordConfig struct {
	data, storeURL, manifestKeys string
	spoolSync                    time.Duration
}

func (c *recordConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.storeURL, "store", "", "object store: file://DIR or s3://BUCKET?endpoint=HOST:PORT (credentials from MEDCALL_S3_ACCESS_KEY/MEDCALL_S3_SECRET_KEY); empty means file://DATA/objects")
	fs.StringVar(&c.manifestKeys, "manifest-keys", "", "manifest signing key set (JSON); empty generates a development key under --data/keys")
	fs.DurationVar(&c.spoolSync, "spool-sync", time.Second, "how often a recording's spool is synced to disk (bounds what a crash can lose)")
}

func (c *recordConfig) storeLocation() string {
	if c.storeURL != "" {
		return c.storeURL
	}
	abs, err := filepath.Abs(filepath.Join(c.data, "objects"))
	if err != nil {
		abs = filepath.Join(c.data, "objects")
	}
	return "file://" + abs
}

func manifestKeys(data, file string) (*manifest.KeySet, error) {
	if file != "" {
		return manifest.LoadKeySet(file)
	}
	return manifest.GenerateDevKeySet(filepath.Join(data, "keys", "manifest-dev.json"))
}

// recording is the recorder with its uploader and store.
type recording struct {
	store    store.Store
	keys     *manifest.KeySet
	uploader *recorder.Uploader
	recorder *recorder.Recorder
}

func openRecording(ctx context.Context, c *recordConfig, log *slog.Logger, obs recorder.UploadObserver) (*recording, error) {
	st, err := store.Open(ctx, c.storeLocation())
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	return newRecording(c, st, log, obs)
}

// newRecording sets up the recorder and uploader over an opened store.
func newRecording(c *recordConfig, st store.Store, log *slog.Logger, obs recorder.UploadObserver) (*recording, error) {
	keys, err := manifestKeys(c.data, c.manifestKeys)
	if err != nil {
		return nil, fmt.Errorf("--manifest-keys: %w", err)
	}
	up, err := recorder.NewUploader(recorder.UploaderOptions{
		Store: st, Keys: keys, Outbox: filepath.Join(c.data, "outbox"), Version: version, Logger: log, Observer: obs,
	})
	if err != nil {
		return nil, err
	}
	rec, err := recorder.New(recorder.Options{
		SpoolDir: filepath.Join(c.data, "spool"), Publisher: up, SyncInterval: c.spoolSync, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return &recording{store: st, keys: keys, uploader: up, recorder: rec}, nil
}

// recoverSpools finalizes orphaned spools (marked recovered) and reports how many.
func (r *recording) recoverSpools(ctx context.Context, log *slog.Logger) int {
	recs, err := r.recorder.Recover(ctx, "")
	if err != nil {
		log.Error("recovering spools", "err", err)
	}
	n := 0
	for _, rec := range recs {
		if !rec.Failed {
			n++
		}
	}
	if len(recs) > 0 {
		log.Info("recovered orphaned recordings", "recovered", n, "failed", len(recs)-n)
	}
	return n
}

// drain waits until every finished recording is safely stored or ctx ends.
func (r *recording) drain(ctx context.Context) error {
	if err := r.recorder.Wait(ctx); err != nil {
		return err
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for r.uploader.Pending() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d recordings still waiting for upload (kept in the outbox; they resume at the next start): %w", r.uploader.Pending(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// lockData takes an exclusive lock on the data directory so that no second
// serve or recover works on the same spools and outbox at once (it would
// finalize recordings still being written). The lock goes with the process.
func lockData(data string) (release func(), err error) {
	if err := os.MkdirAll(data, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(data, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another medcall process (serve or recover): %w", data, err)
	}
	return func() { f.Close() }, nil
}
