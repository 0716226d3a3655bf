package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// queued is one message waiting in the on-disk queue: a file named after
// its webhook-id, written with fsync and rename so that a crash leaves
// either the whole message or none.
type queued struct {
	ID       string          `json:"id"`
	Enqueued time.Time       `json:"enqueued"`
	Body     json.RawMessage `json:"body"` // the exact payload that is signed and sent
}

// queue is a directory of queued messages.
type queue struct{ dir string }

func openQueue(dir string) (queue, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return queue{}, fmt.Errorf("webhook: queue directory %s: %w", dir, err)
	}
	return queue{dir}, nil
}

func (q queue) path(id string) string { return filepath.Join(q.dir, id+".json") }

// put stores m unless a message with its id is already queued (the same
// event enqueued twice, e.g. after a crash between its cause and the
// removal of that cause, stays one message). added says whether it was new.
func (q queue) put(m queued) (added bool, err error) {
	if _, err := os.Stat(q.path(m.ID)); err == nil {
		return false, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	tmp := q.path(m.ID) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("webhook: queue %s: %w", m.ID, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, q.path(m.ID))
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("webhook: queue %s: %w", m.ID, err)
	}
	if d, err := os.Open(q.dir); err == nil { // make the rename durable
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}

// list returns the queued messages, oldest first. A file that cannot be
// read is reported and left for an operator.
func (q queue) list() ([]queued, error) {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("webhook: read queue %s: %w", q.dir, err)
	}
	var out []queued
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(q.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var m queued
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil || m.ID+".json" != e.Name() {
			errs = append(errs, fmt.Errorf("webhook: queued message %s unreadable (%v); move it out of %s", e.Name(), err, q.dir))
			continue
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Enqueued.Before(out[j].Enqueued) })
	return out, errors.Join(errs...)
}

func (q queue) remove(id string) error { return os.Remove(q.path(id)) }
