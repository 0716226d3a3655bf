package sfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Bindings keeps each consultation's binding (DESIGN §2): the first accepted
// join binds cid -> (pid, rec) and every later join must match it. Bindings
// of finished consultations are forgotten after a retention period. The
// SFU's default is in memory; FileBindings persists them so a restart cannot
// rebind an old consultation; a store shared by several servers (Redis, a
// database) implements the same two methods.
type Bindings interface {
	// Bind records b when its consultation has no binding (or only an
	// expired one), accepts it when it equals the binding held, and returns
	// ErrBindingMismatch otherwise. A bound consultation is in use again
	// until Finished. Any other error means b could not be recorded; the
	// join must then be refused.
	Bind(b Binding) error
	// Finished says the consultation's session ended at t; its binding
	// expires retention after t unless a join binds it again first.
	Finished(cid string, t time.Time) error
}

// DefaultBindingRetention is how long a finished consultation's binding is
// kept when no retention is configured.
const DefaultBindingRetention = 30 * 24 * time.Hour

// bindingRecord is one binding with its state, as kept and as written.
type bindingRecord struct {
	Consultation string    `json:"consultation"`
	Patient      string    `json:"patient"`
	Record       bool      `json:"record"`
	Finished     time.Time `json:"finished,omitzero"` // zero while in use
}

func (r bindingRecord) binding() Binding {
	return Binding{Consultation: r.Consultation, Patient: r.Patient, Record: r.Record}
}

// MemoryBindings keeps bindings in memory, for one process's life at most.
type MemoryBindings struct {
	// Retention of finished bindings; 0 means DefaultBindingRetention.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// persist, if set, writes a changed record (FileBindings); remove deletes one.
	persist func(bindingRecord) error
	remove  func(cid string) error

	mu        sync.Mutex
	m         map[string]bindingRecord
	lastSweep time.Time
}

func (s *MemoryBindings) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *MemoryBindings) retention() time.Duration {
	if s.Retention <= 0 {
		return DefaultBindingRetention
	}
	return s.Retention
}

func (s *MemoryBindings) expired(r bindingRecord, now time.Time) bool {
	return !r.Finished.IsZero() && now.Sub(r.Finished) >= s.retention()
}

// Bind implements Bindings.
func (s *MemoryBindings) Bind(b Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]bindingRecord{}
	}
	old, ok := s.m[b.Consultation]
	if ok && !s.expired(old, s.now()) {
		if old.binding() != b {
			return ErrBindingMismatch
		}
		if old.Finished.IsZero() {
			return nil
		}
	}
	r := bindingRecord{Consultation: b.Consultation, Patient: b.Patient, Record: b.Record}
	if s.persist != nil {
		if err := s.persist(r); err != nil {
			return err
		}
	}
	s.m[b.Consultation] = r
	return nil
}

// Finished implements Bindings. It also forgets expired bindings, at most
// once a minute.
func (s *MemoryBindings) Finished(cid string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if r, ok := s.m[cid]; ok && r.Finished.IsZero() {
		r.Finished = t
		if s.persist != nil {
			err = s.persist(r)
		}
		s.m[cid] = r
	}
	if now := s.now(); now.Sub(s.lastSweep) >= time.Minute {
		s.lastSweep = now
		err = errors.Join(err, s.sweep(now))
	}
	return err
}

// sweep forgets expired bindings (called locked).
func (s *MemoryBindings) sweep(now time.Time) error {
	var errs []error
	for cid, r := range s.m {
		if !s.expired(r, now) {
			continue
		}
		if s.remove != nil {
			if err := s.remove(cid); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		delete(s.m, cid)
	}
	return errors.Join(errs...)
}

// Len is the number of bindings held, expired ones not yet swept included.
func (s *MemoryBindings) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// FileBindings is MemoryBindings persisted in a directory, one small JSON
// file per consultation ({cid}.json), each written atomically (temporary
// file, fsync, rename, fsync of the directory) before Bind returns.
type FileBindings struct {
	MemoryBindings
	dir string
}

// cidFile keeps file names to the id alphabet; ids are validated before
// they get here, this is the second lock on the door.
var cidFile = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// OpenFileBindings loads the bindings kept in dir (created 0700 if missing),
// forgetting those expired under retention (0 means the default).
func OpenFileBindings(dir string, retention time.Duration) (*FileBindings, error) {
	return openFileBindings(dir, retention, nil)
}

func openFileBindings(dir string, retention time.Duration, now func() time.Time) (*FileBindings, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bindings: create %s: %w", dir, err)
	}
	f := &FileBindings{dir: dir}
	f.Retention, f.Now = retention, now
	f.m = map[string]bindingRecord{}
	f.persist, f.remove = f.write, f.delete
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bindings: read %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			_ = os.Remove(filepath.Join(dir, name)) // a write a crash interrupted
			continue
		}
		cid, ok := strings.CutSuffix(name, ".json")
		if !ok || !cidFile.MatchString(cid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("bindings: read %s: %w", name, err)
		}
		var r bindingRecord
		if err := json.Unmarshal(b, &r); err != nil || r.Consultation != cid {
			return nil, fmt.Errorf("bindings: %s is corrupt (%v); move it aside only if you know the consultation's patient", filepath.Join(dir, name), err)
		}
		f.m[cid] = r
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	started := f.now()
	// No consultation runs in a process that is just starting: one still
	// marked in use ended with the last process (a crash, a kill), so its
	// retention starts now rather than never.
	for cid, r := range f.m {
		if r.Finished.IsZero() {
			r.Finished = started
			if err := f.write(r); err != nil {
				return nil, err
			}
			f.m[cid] = r
		}
	}
	if err := f.sweep(started); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FileBindings) path(cid string) (string, error) {
	if !cidFile.MatchString(cid) {
		return "", fmt.Errorf("bindings: consultation id %q is not a valid id", cid)
	}
	return filepath.Join(f.dir, cid+".json"), nil
}

func (f *FileBindings) write(r bindingRecord) error {
	path, err := f.path(r.Consultation)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, ".bind-*")
	if err != nil {
		return fmt.Errorf("bindings: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	_, werr := tmp.Write(append(b, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("bindings: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("bindings: %w", err)
	}
	return f.syncDir()
}

func (f *FileBindings) delete(cid string) error {
	path, err := f.path(cid)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bindings: %w", err)
	}
	return f.syncDir()
}

func (f *FileBindings) syncDir() error {
	d, err := os.Open(f.dir)
	if err != nil {
		return fmt.Errorf("bindings: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("bindings: sync %s: %w", f.dir, err)
	}
	return nil
}
