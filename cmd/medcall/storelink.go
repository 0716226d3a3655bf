package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/recorder/store"
)

// Calls need no object store until a recording is finished, so serve does
// not wait for one: it connects in the background and keeps watching it.
// While the store is unreachable, calls go on, finished recordings wait in
// the durable outbox (the uploader retries), /readyz says "degraded: store
// unreachable", medcall_store_up is 0 and one log line says so.
const (
	// storeStartWait is how long serve waits for the store at start-up
	// before it serves without it. An error within this time is a
	// configuration mistake (bad URL, credentials, missing bucket) and
	// stops serve, since retrying cannot fix it.
	storeStartWait = 2 * time.Second
	// storeProbeEvery is how often a connected store is probed.
	storeProbeEvery = 5 * time.Second
	// storeProbeTimeout bounds one probe (the S3 store retries inside it).
	storeProbeTimeout = 3 * time.Second
	// storeProbeKey is read to probe the store; it never exists, so
	// "not found" means the store answered.
	storeProbeKey = "medcall-probe/readiness"
)

// errStoreDown is what every operation returns before the first connection.
var errStoreDown = errors.New("object store unreachable (not connected yet); recordings wait in the outbox and are uploaded once it answers")

// storeLink is a store.Store that serve can use before the real store has
// answered. Operations fail fast with errStoreDown until then; after, they
// go to the real store.
type storeLink struct {
	s        atomic.Pointer[store.Store]
	up       atomic.Bool
	log      *slog.Logger
	mu       sync.Mutex // serializes setUp
	saidDown bool       // the current "down" was logged; guarded by mu
}

var _ store.Store = (*storeLink)(nil)

// linkStore opens the store at loc. It returns as soon as the store answers,
// or with the store's error when that comes within storeStartWait; after
// that it returns a link that is still connecting and finishes in the
// background until ctx ends.
func linkStore(ctx context.Context, loc string, log *slog.Logger) (*storeLink, error) {
	l := &storeLink{log: log}
	type result struct {
		s   store.Store
		err error
	}
	first := make(chan result, 1)
	go func() {
		s, err := store.Open(ctx, loc)
		first <- result{s, err}
	}()
	t := time.NewTimer(storeStartWait)
	defer t.Stop()
	select {
	case r := <-first:
		if r.err != nil {
			return nil, fmt.Errorf("--store: %w", r.err)
		}
		l.connected(ctx, r.s)
		return l, nil
	case <-t.C:
	}
	l.setUp(false, errors.New("no answer within "+storeStartWait.String()))
	go func() {
		r := <-first
		for r.err != nil && ctx.Err() == nil {
			l.setUp(false, r.err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(storeProbeEvery):
			}
			s, err := store.Open(ctx, loc)
			r = result{s, err}
		}
		if r.err == nil {
			l.connected(ctx, r.s)
		}
	}()
	return l, nil
}

// connected installs the real store and starts probing it.
func (l *storeLink) connected(ctx context.Context, s store.Store) {
	l.s.Store(&s)
	l.setUp(true, nil)
	go func() {
		t := time.NewTicker(storeProbeEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ctx, storeProbeTimeout)
			_, err := s.Stat(pctx, storeProbeKey)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
			l.setUp(err == nil, err)
		}
	}()
}

// setUp records the store's state; the first "down" and every change are
// logged once.
func (l *storeLink) setUp(up bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.up.Swap(up)
	if was == up && (up || l.saidDown) {
		return
	}
	if up {
		l.saidDown = false
		l.log.Info("object store reachable; recordings waiting in the outbox are uploaded")
		return
	}
	l.saidDown = true
	l.log.Error("object store unreachable: calls continue, finished recordings wait in the outbox until it answers; check the store's address, network and health",
		"err", err)
}

// Up reports whether the store answered its last probe.
func (l *storeLink) Up() bool { return l.up.Load() }

func (l *storeLink) get() (store.Store, error) {
	p := l.s.Load()
	if p == nil {
		return nil, errStoreDown
	}
	return *p, nil
}

func (l *storeLink) Put(ctx context.Context, key string, r io.Reader, size int64) (store.Info, error) {
	s, err := l.get()
	if err != nil {
		return store.Info{}, err
	}
	return s.Put(ctx, key, r, size)
}

func (l *storeLink) Get(ctx context.Context, key string) (io.ReadSeekCloser, store.Info, error) {
	s, err := l.get()
	if err != nil {
		return nil, store.Info{}, err
	}
	return s.Get(ctx, key)
}

func (l *storeLink) Stat(ctx context.Context, key string) (store.Info, error) {
	s, err := l.get()
	if err != nil {
		return store.Info{}, err
	}
	return s.Stat(ctx, key)
}

func (l *storeLink) List(ctx context.Context, prefix string) ([]string, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

func (l *storeLink) Delete(ctx context.Context, key string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

func (l *storeLink) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	s, err := l.get()
	if err != nil {
		return "", false, err
	}
	return s.PresignGet(ctx, key, ttl)
}
