package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/medcall/medcall/recorder/store"
)

// LocalPublisher is a test Publisher: it writes what it is given into a
// directory laid out like the store, with a plain JSON sidecar, so tests can
// look at the files without a store or signing keys.
type LocalPublisher struct {
	Dir string
}

// objectPrefix is the key prefix of a consultation's recordings, from the one key builder.
func objectPrefix(patient, consultation string) (string, error) {
	webm, _, err := store.RecordingKeys(patient, consultation, "00000000-0000-7000-8000-000000000000")
	if err != nil {
		return "", err
	}
	return path.Dir(webm) + "/", nil
}

type sidecar struct {
	*Recording
	Error  string `json:"error,omitempty"`
	Object string `json:"object,omitempty"`
}

// Publish implements Publisher.
func (p LocalPublisher) Publish(ctx context.Context, rec *Recording, webmPath string) error {
	prefix, err := objectPrefix(rec.Patient, rec.Consultation)
	if err != nil {
		return err
	}
	if !idPattern.MatchString(rec.ID) {
		return fmt.Errorf("recording %q: %w", rec.ID, ErrBadID)
	}
	dir := filepath.Join(p.Dir, "objects", filepath.FromSlash(prefix))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	sc := sidecar{Recording: rec}
	if rec.Err != nil {
		sc.Error = rec.Err.Error()
	}
	if !rec.Failed {
		if webmPath == "" {
			return errors.New("publish: no file for a successful recording")
		}
		sc.Object = prefix + rec.ID + ".webm"
		if err := moveFile(ctx, webmPath, filepath.Join(dir, rec.ID+".webm")); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, rec.ID+".recording.json"), b)
}
