package recorder

import "time"

// unwrap16 extends 16-bit RTP sequence numbers to 64 bits. Values are
// interpreted relative to the highest seen so far, so reordering across the
// wrap is handled.
type unwrap16 struct {
	highest int64
	started bool
}

func (u *unwrap16) unwrap(v uint16) int64 {
	if !u.started {
		u.started = true
		u.highest = int64(v)
		return u.highest
	}
	ext := u.highest + int64(int16(v-uint16(u.highest)))
	if ext > u.highest {
		u.highest = ext
	}
	return ext
}

// unwrap32 extends 32-bit RTP timestamps to 64 bits, like unwrap16.
type unwrap32 struct {
	highest int64
	started bool
}

func (u *unwrap32) unwrap(v uint32) int64 {
	ext := u.peek(v)
	if !u.started || ext > u.highest {
		u.highest = ext
	}
	u.started = true
	return ext
}

// peek extends v without moving the reference point (used for sender reports).
func (u *unwrap32) peek(v uint32) int64 {
	if !u.started {
		return int64(v)
	}
	return u.highest + int64(int32(v-uint32(u.highest)))
}

// reorderSize is the number of sequence numbers the reorder buffer can hold.
// A power of two so the slot index is a mask. A gap is given up once
// reorderMaxLate newer packets are held, so twice that is room enough.
const reorderSize = 2 * reorderMaxLate

type reorderSlot struct {
	ext   int64
	valid bool
	it    item
}

// reorderBuffer puts one track's packets back into sequence order. A missing
// packet is waited for until maxLate newer packets or maxWait of arrival time
// have gone by; then it is declared lost and the buffer moves on.
type reorderBuffer struct {
	slots     [reorderSize]reorderSlot
	next      int64 // next sequence number to emit
	highest   int64
	started   bool
	waitStart time.Time // arrival of the first packet held behind the current gap
	maxLate   int64
	maxWait   time.Duration
	late      uint64 // packets that came after their slot was given up
}

// push stores it under extended sequence ext. It reports false (and the
// caller releases it) for duplicates and packets older than what was emitted.
func (b *reorderBuffer) push(ext int64, it item, emit func(*item), lost func(int64)) bool {
	if !b.started {
		b.started = true
		b.next, b.highest = ext, ext
	}
	if ext < b.next {
		b.late++
		return false
	}
	if ext >= b.next+reorderSize {
		b.skipTo(ext-reorderSize+1, emit, lost)
	}
	s := &b.slots[uint64(ext)&(reorderSize-1)]
	if s.valid && s.ext == ext {
		return false
	}
	s.ext, s.valid, s.it = ext, true, it
	if ext > b.highest {
		b.highest = ext
	}
	b.drain(it.arrival, emit, lost)
	return true
}

// drain emits everything that is in order and gives up on gaps that waited long enough.
func (b *reorderBuffer) drain(now time.Time, emit func(*item), lost func(int64)) {
	for b.next <= b.highest {
		s := &b.slots[uint64(b.next)&(reorderSize-1)]
		if s.valid && s.ext == b.next {
			s.valid = false
			b.next++
			b.waitStart = time.Time{}
			emit(&s.it)
			continue
		}
		if b.waitStart.IsZero() {
			b.waitStart = now
		}
		if b.highest-b.next < b.maxLate && now.Sub(b.waitStart) < b.maxWait {
			return
		}
		// Give up on this gap: skip to the next packet we hold.
		n := b.next + 1
		for n <= b.highest {
			t := &b.slots[uint64(n)&(reorderSize-1)]
			if t.valid && t.ext == n {
				break
			}
			n++
		}
		lost(n - b.next)
		b.next = n
		b.waitStart = time.Time{}
	}
}

// skipTo emits or gives up everything below target.
func (b *reorderBuffer) skipTo(target int64, emit func(*item), lost func(int64)) {
	end := min(target, b.next+reorderSize)
	var missing int64
	for ; b.next < end; b.next++ {
		s := &b.slots[uint64(b.next)&(reorderSize-1)]
		if s.valid && s.ext == b.next {
			if missing > 0 {
				lost(missing)
				missing = 0
			}
			s.valid = false
			emit(&s.it)
			continue
		}
		missing++
	}
	if b.next < target {
		missing += target - b.next
		b.next = target
	}
	if missing > 0 {
		lost(missing)
	}
	b.waitStart = time.Time{}
}

// flush emits everything still held, in order, declaring the gaps lost.
func (b *reorderBuffer) flush(emit func(*item), lost func(int64)) {
	if b.started && b.highest >= b.next {
		b.skipTo(b.highest+1, emit, lost)
	}
}
