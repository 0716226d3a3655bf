package sfu

import (
	"maps"
	"sync"
	"sync/atomic"
)

// cowMap is a map read on the packet path without a lock: each change
// replaces it whole, under its writers' lock.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex // writers
	p  atomic.Pointer[map[K]V]
}

// get is the value for k, or V's zero value.
func (c *cowMap[K, V]) get(k K) V {
	var zero V
	if m := c.p.Load(); m != nil {
		return (*m)[k]
	}
	return zero
}

// edit applies f to a copy of the map, which then replaces it.
func (c *cowMap[K, V]) edit(f func(map[K]V)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n map[K]V
	if m := c.p.Load(); m != nil {
		n = maps.Clone(*m)
	} else {
		n = map[K]V{}
	}
	f(n)
	c.p.Store(&n)
}
