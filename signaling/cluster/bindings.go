package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/redis/go-redis/v9"
)

// Bindings keeps consultation bindings (sfu.Bindings) in Redis so every
// node sees one binding per consultation: the first writer wins atomically
// (one Lua script), a finished binding expires after Retention (a Redis
// TTL) unless a join binds it again first. Redis must run with the
// append-only file and appendfsync always (see docs/cluster.md): a binding
// is acknowledged only once it is on disk, so no restart can rebind.
type Bindings struct {
	Redis *redis.Client
	// Retention of finished bindings; 0 means sfu.DefaultBindingRetention.
	Retention time.Duration
}

// bindScript sets KEYS[1] to ARGV[1] when unset, keeps an equal binding
// (in use again: no expiry) and refuses a different one (returns 0).
var bindScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
if cur == ARGV[1] then
  redis.call('PERSIST', KEYS[1])
  return 1
end
return 0
`)

const bindTimeout = 3 * time.Second

type storedBinding struct {
	Consultation string `json:"consultation"`
	Patient      string `json:"patient"`
	Record       bool   `json:"record"`
}

// Bind implements sfu.Bindings.
func (s *Bindings) Bind(b sfu.Binding) error {
	v, err := json.Marshal(storedBinding{b.Consultation, b.Patient, b.Record})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bindTimeout)
	defer cancel()
	ok, err := bindScript.Run(ctx, s.Redis, []string{keyBinding + b.Consultation}, v).Int()
	if err != nil {
		return fmt.Errorf("cluster: bind consultation in Redis: %w", err)
	}
	if ok != 1 {
		return sfu.ErrBindingMismatch
	}
	return nil
}

// Finished implements sfu.Bindings: the binding expires Retention after t.
func (s *Bindings) Finished(cid string, t time.Time) error {
	ret := s.Retention
	if ret <= 0 {
		ret = sfu.DefaultBindingRetention
	}
	ctx, cancel := context.WithTimeout(context.Background(), bindTimeout)
	defer cancel()
	if err := s.Redis.PExpireAt(ctx, keyBinding+cid, t.Add(ret)).Err(); err != nil {
		return fmt.Errorf("cluster: mark binding finished in Redis: %w", err)
	}
	return nil
}

var _ sfu.Bindings = (*Bindings)(nil)
