package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
)

// recordingCheck is what became of one consultation's recording.
type recordingCheck struct {
	stored   bool          // a manifest appeared under the consultation's prefix
	verified bool          // and it verifies against the WebM's bytes
	latency  time.Duration // last leave to manifest present
	err      error
	timedOut bool
}

// awaitRecording polls the store until a manifest for pid/cid appears (or
// ctx ends), then verifies it and its WebM with the manifest keys. The time
// from ended to the manifest being listed is "call end to safely stored":
// the server writes the manifest only after the WebM is verified in the
// store.
func awaitRecording(ctx context.Context, st store.Store, keys *manifest.KeySet, pid, cid string, ended time.Time) recordingCheck {
	prefix, err := store.PatientPrefix(pid)
	if err != nil {
		return recordingCheck{err: err}
	}
	want := prefix + "consultations/" + cid + "/"
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		keys2, err := st.List(ctx, want)
		if err == nil {
			for _, k := range keys2 {
				if strings.HasSuffix(k, ".manifest.json") {
					rc := recordingCheck{stored: true, latency: storedAfter(ctx, st, k, ended)}
					rc.err = verifyRecording(ctx, st, keys, k)
					rc.verified = rc.err == nil
					return rc
				}
			}
		}
		select {
		case <-ctx.Done():
			return recordingCheck{timedOut: true, err: fmt.Errorf("recording of %s not stored: %w", cid, ctx.Err())}
		case <-t.C:
		}
	}
}

// storedAfter is the time from ended to the manifest being written: its
// modification time when the store gives one that falls between the two
// (the local store, same clock), else the moment it was listed (which is
// later by at most the polling interval).
func storedAfter(ctx context.Context, st store.Store, key string, ended time.Time) time.Duration {
	seen := time.Now()
	if info, err := st.Stat(ctx, key); err == nil && info.ModTime.After(ended) && info.ModTime.Before(seen) {
		return info.ModTime.Sub(ended)
	}
	return seen.Sub(ended)
}

func verifyRecording(ctx context.Context, st store.Store, keys *manifest.KeySet, manifestKey string) error {
	env, err := readAll(ctx, st, manifestKey)
	if err != nil {
		return err
	}
	stmt, err := manifest.Verify(keys, env)
	if err != nil {
		return fmt.Errorf("%s: %w", manifestKey, err)
	}
	webmKey := stmt.Subject[0].Name
	if want := strings.TrimSuffix(manifestKey, ".manifest.json") + ".webm"; webmKey != want {
		return fmt.Errorf("%s: subject %s is not its WebM %s", manifestKey, webmKey, want)
	}
	rc, _, err := st.Get(ctx, webmKey)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := manifest.VerifyObject(keys, env, webmKey, rc); err != nil {
		return fmt.Errorf("%s: %w", webmKey, err)
	}
	return nil
}

func readAll(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, _, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = io.Copy(&b, rc)
	return b.Bytes(), err
}
