package turn

import "sync/atomic"

// Metrics are the relay's counters, plain atomics read by cmd's Prometheus
// collectors. No label ever carries a credential or a participant.
type Metrics struct {
	AllocationsActive atomic.Int64
	Allocations       atomic.Uint64 // created, ever
	BytesToPeer       atomic.Uint64 // client -> SFU through a relay
	BytesToClient     atomic.Uint64 // SFU -> client through a relay
	refusals          [maxReasons]atomic.Uint64
}

const maxReasons = 16

var reasonIndex = func() map[string]int {
	if len(Reasons) > maxReasons {
		panic("turn: raise maxReasons")
	}
	m := map[string]int{}
	for i, r := range Reasons {
		m[r] = i
	}
	return m
}()

// Refused counts a refusal; reason is one of Reasons.
func (m *Metrics) Refused(reason string) {
	if i, ok := reasonIndex[reason]; ok {
		m.refusals[i].Add(1)
	}
}

// Refusals returns the count for one reason.
func (m *Metrics) Refusals(reason string) uint64 {
	if i, ok := reasonIndex[reason]; ok {
		return m.refusals[i].Load()
	}
	return 0
}
