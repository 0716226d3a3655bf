package replay

import (
	"slices"
	"time"
)

// A consultation that moved between cluster nodes (a node lost or drained)
// is stored as several recordings, its segments: the recording on the new
// node is a new object whose signed manifest names the one before it
// (Previous). Replay presents them as one Consultation: the list has one
// entry per consultation, and its timeline and participant streams play
// the segments back to back on one clock, each gap (the wall-clock time
// nobody was recorded, e.g. while clients reconnected) noted rather than
// played as dead air.
//
// A link is trusted only when both ends pass the same checks as any
// recording: each segment is verified, visible to this viewer by the access
// rule, not hidden, and of the same patient and the same consultation, and
// the previous one started first. A manifest whose Previous names a
// recording of another patient or consultation is never joined to it (and
// raises AlertChainMismatch); a viewer who may see only some segments sees
// only those, the others' neighbours standing alone. If two segments name
// one previous, the one that started first continues it.

// AlertChainMismatch is the Alert reason for a verified manifest whose
// Previous names a recording of another patient or consultation: the two
// are never joined, but a recorder or cluster bug produced it.
const AlertChainMismatch = "chain_mismatch"

// Segment is one recording of a Consultation, placed on its timeline.
type Segment struct {
	*Recording
	// OffsetMS is where the segment starts on the consultation's timeline:
	// the durations of the segments before it, added up.
	OffsetMS int64
	// GapMS is the wall-clock time between the end of the previous segment
	// (as it plays) and the start of this one, which was not recorded (0
	// for the first).
	GapMS int64
}

// Consultation is what one viewer sees of one consultation: its segments,
// in order, each of which that viewer may see.
type Consultation struct {
	Segments []Segment
}

// Head is the first segment; its id names the consultation in the API.
func (c Consultation) Head() *Recording { return c.Segments[0].Recording }

// DurationMS is how long the consultation plays: its segments' durations
// added up.
func (c Consultation) DurationMS() int64 {
	last := c.Segments[len(c.Segments)-1]
	return last.OffsetMS + durationMS(last.Recording)
}

// durationMS is how long r plays: to its signed end, and at least to the
// end of its last frame (a recovered recording ends where its last frame
// starts), so the next segment's first frame never lands on it.
func durationMS(r *Recording) int64 {
	d := r.Ended.Sub(r.Started).Milliseconds()
	for _, t := range r.Tracks {
		d = max(d, t.LastMS+frameMS)
	}
	return max(d, 0)
}

// frameMS is how long a segment's last frame lasts, at least: one Opus
// frame.
const frameMS = 20

// Consultations returns what v may see, grouped: one Consultation per chain
// of segments, ordered by their first segment's start.
func (x *Index) Consultations(v Viewer) []Consultation {
	recs := x.Visible(v)
	x.mu.RLock()
	defer x.mu.RUnlock()
	placed := map[string]bool{}
	var out []Consultation
	for _, r := range recs {
		if placed[r.ID] {
			continue
		}
		segs := x.chain(v, r)
		for _, s := range segs {
			placed[s.ID] = true
		}
		out = append(out, place(segs))
	}
	return out
}

// FindConsultation returns the consultation v sees that holds recording
// rid, or ErrNotVisible exactly as Find does.
func (x *Index) FindConsultation(v Viewer, rid string) (Consultation, error) {
	r, err := x.Find(v, rid)
	if err != nil {
		return Consultation{}, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return place(x.chain(v, r)), nil
}

// place lays segments out back to back.
func place(segs []*Recording) Consultation {
	c := Consultation{Segments: make([]Segment, 0, len(segs))}
	off := int64(0)
	for i, r := range segs {
		s := Segment{Recording: r, OffsetMS: off}
		if i > 0 {
			prev := segs[i-1]
			s.GapMS = max(r.Started.Sub(prev.Started).Milliseconds()-durationMS(prev), 0)
		}
		c.Segments = append(c.Segments, s)
		off += durationMS(r)
	}
	return c
}

// chain returns the segments v sees in r's consultation, oldest first; r is
// among them. Called with x.mu held.
func (x *Index) chain(v Viewer, r *Recording) []*Recording {
	head := r
	for {
		p := x.byID[head.Previous]
		if head.Previous == "" || p == nil || x.successor(v, p) != head {
			break
		}
		head = p
	}
	segs := []*Recording{head}
	for s := x.successor(v, head); s != nil; s = x.successor(v, s) {
		segs = append(segs, s) // ends: each step starts strictly later
	}
	return segs
}

// successor is the segment v sees that continues prev: of the recordings
// naming prev as previous, those v may see, of prev's patient and
// consultation, started after it, the first. Called with x.mu held.
func (x *Index) successor(v Viewer, prev *Recording) *Recording {
	if !x.shown(v, prev) {
		return nil
	}
	var next *Recording
	for _, s := range x.successors[prev.ID] {
		if x.shown(v, s) && sameConsultation(prev, s) && earlier(prev, s) && (next == nil || earlier(s, next)) {
			next = s
		}
	}
	return next
}

// shown says whether v sees r. Called with x.mu held.
func (x *Index) shown(v Viewer, r *Recording) bool {
	return x.byID[r.ID] == r && !x.hidden[r.ID] && mayView(v, r)
}

func sameConsultation(a, b *Recording) bool {
	return a.Patient == b.Patient && a.Consultation == b.Consultation
}

// earlier orders recordings by start, then id: a strict order, so a chain
// can never loop.
func earlier(a, b *Recording) bool {
	return a.Started.Before(b.Started) || (a.Started.Equal(b.Started) && a.ID < b.ID)
}

// link files rec under the recording it names as previous. Called with
// x.mu held for writing.
func (x *Index) link(rec *Recording) {
	if x.successors == nil {
		x.successors = map[string][]*Recording{}
	}
	if rec.Previous != "" && rec.Previous != rec.ID {
		x.successors[rec.Previous] = append(x.successors[rec.Previous], rec)
	}
}

// checkChain alerts when rec and a recording it is chained with, either
// way, belong to different patients or consultations.
func (x *Index) checkChain(rec *Recording) {
	x.mu.RLock()
	var bad []*Recording
	if p := x.byID[rec.Previous]; rec.Previous != "" && p != nil && !sameConsultation(p, rec) {
		bad = append(bad, rec)
	}
	for _, s := range x.successors[rec.ID] {
		if !sameConsultation(rec, s) {
			bad = append(bad, s)
		}
	}
	x.mu.RUnlock()
	for _, r := range slices.Compact(bad) {
		x.alert(r.Key, AlertChainMismatch, "manifest names as previous a recording of another patient or consultation; not joined")
	}
}

// at maps a time within segment s to the consultation's clock,
// as an offset in ms from its start.
func (s Segment) at(t time.Time) int64 {
	return s.OffsetMS + min(max(t.Sub(s.Started).Milliseconds(), 0), durationMS(s.Recording))
}
