package sfu

import "slices"

// Hosted lists the consultations this SFU holds now, sorted; a cluster
// renews their placement leases from it.
func (s *SFU) Hosted() []string {
	s.mu.Lock()
	ids := make([]string, 0, len(s.consultations))
	for id := range s.consultations {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// MaxConsultations is how many consultations this SFU hosts at once (0: no
// limit); a cluster publishes it so placement skips a full node.
func (s *SFU) MaxConsultations() int { return s.cfg.MaxConsultations }

// End closes one consultation: its participants get a bye with reason
// (e.g. "shutdown" when another node now hosts it) and are removed. It
// reports whether the consultation was here.
func (s *SFU) End(cid, reason string) bool {
	s.mu.Lock()
	c := s.consultations[cid]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.close(reason)
	return true
}
