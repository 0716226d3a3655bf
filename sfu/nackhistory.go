package sfu

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// history is what one outgoing stream sent in the last maxNackAge, by
// sequence number, for the NACK responder (nackresponder.go). Its ring
// starts at minHistorySlots and doubles while a packet still within
// maxNackAge would be overwritten, up to maxSlots; packets older than
// maxNackAge are let go as new ones arrive. Safe for concurrent use: the
// goroutine forwarding a packet adds, the connection's RTCP reader resends.
type history struct {
	w        interceptor.RTPWriter
	maxSlots int
	ssrc     uint32
	rtxSSRC  uint32
	rtxPT    uint8

	mu      sync.Mutex
	ring    []sentPacket // len is a power of two
	started bool
	newest  uint16 // highest sequence number added
	oldest  uint16 // no packet before it is held
	rtt     time.Duration
	rtxSeq  uint16
	scratch []byte // an RTX payload being built
}

// sentPacket is one packet copy; buf is nil for an empty slot.
type sentPacket struct {
	hdr      rtp.Header
	buf      *[]byte
	at       int64 // unix nanos it was sent
	resentAt int64
}

const minHistorySlots = 16

func (h *history) slot(seq uint16) *sentPacket { return &h.ring[int(seq)&(len(h.ring)-1)] }

// add keeps a copy of a packet being sent at now.
func (h *history) add(hdr *rtp.Header, payload []byte, now int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seq := hdr.SequenceNumber
	if !h.started {
		h.ring = make([]sentPacket, minHistorySlots)
		h.started, h.newest, h.oldest = true, seq, seq
	} else if d := seq - h.newest; d != 0 && d < 1<<15 {
		if int(d) >= h.maxSlots { // a jump past everything held
			h.clearLocked()
			h.oldest = seq
		}
		h.newest = seq
	} else if seq-h.oldest >= 1<<15 {
		return // older than anything held: a NACK for it is refused anyway
	}
	h.expire(now)
	for int(h.newest-h.oldest) >= len(h.ring) && len(h.ring) < h.maxSlots && h.fresh(h.oldest, now) {
		h.grow()
	}
	for int(h.newest-h.oldest) >= len(h.ring) { // full: the oldest make room
		h.drop(h.oldest)
		h.oldest++
	}
	s := h.slot(seq)
	s.release()
	s.hdr = *hdr
	if len(hdr.CSRC) > 0 || len(hdr.Extensions) > 0 {
		s.hdr = hdr.Clone() // the writer's slices are its own to reuse
	}
	s.buf, s.at, s.resentAt = getPacketBuf(len(payload)), now, 0
	*s.buf = append((*s.buf)[:0], payload...)
}

// expire lets go of what was sent more than maxNackAge before now.
// Called locked.
func (h *history) expire(now int64) {
	for h.oldest != h.newest && !h.fresh(h.oldest, now) {
		h.drop(h.oldest)
		h.oldest++
	}
}

// fresh reports whether seq is held and was sent within maxNackAge of now.
// Called locked.
func (h *history) fresh(seq uint16, now int64) bool {
	s := h.slot(seq)
	if s.buf == nil {
		return false
	}
	return s.hdr.SequenceNumber == seq && now-s.at <= int64(maxNackAge)
}

// drop empties seq's slot if it holds seq. Called locked.
func (h *history) drop(seq uint16) {
	if s := h.slot(seq); s.buf != nil && s.hdr.SequenceNumber == seq {
		s.release()
	}
}

// grow doubles the ring. Called locked.
func (h *history) grow() {
	old := h.ring
	h.ring = make([]sentPacket, 2*len(old))
	for i := range old {
		if old[i].buf != nil {
			*h.slot(old[i].hdr.SequenceNumber) = old[i]
		}
	}
}

// resend writes seq again if it is held and was not resent within the
// last round trip; spend says whether the budget allows size more bytes.
// It returns false when the budget ran out.
func (h *history) resend(seq uint16, now int64, spend func(size int) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.holds(seq, now) {
		return true
	}
	_, more := h.resendLocked(seq, now, spend)
	return more
}

// resendLost is resend of a packet whose copy sent at copyAt was lost, if
// no resend of it has started since; it reports whether it resent.
func (h *history) resendLost(seq uint16, copyAt, now int64, spend func(size int) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.holds(seq, now) || h.slot(seq).resentAt > copyAt {
		return false
	}
	sent, _ := h.resendLocked(seq, now, spend)
	return sent
}

// holds reports whether seq is held and fresh. Called locked.
func (h *history) holds(seq uint16, now int64) bool {
	return h.started && seq-h.oldest <= h.newest-h.oldest && h.fresh(seq, now)
}

// resendLocked is resend of a held, fresh packet: it reports whether it
// wrote the packet and whether the budget has room for more. Called locked.
func (h *history) resendLocked(seq uint16, now int64, spend func(size int) bool) (sent, more bool) {
	s := h.slot(seq)
	if s.resentAt != 0 && now-s.resentAt < int64(h.rtt+5*time.Millisecond) {
		return false, true
	}
	payload := *s.buf
	hdr := s.hdr
	if h.rtxSSRC != 0 && h.rtxPT != 0 {
		h.scratch = append(append(h.scratch[:0], 0, 0), payload...)
		putOSN(h.scratch, seq)
		payload = h.scratch
		hdr.SSRC, hdr.PayloadType, hdr.SequenceNumber = h.rtxSSRC, h.rtxPT, h.rtxSeq
		hdr.Padding, hdr.PaddingSize = false, 0
	}
	if !spend(hdr.MarshalSize() + len(payload)) {
		return false, false
	}
	if hdr.SSRC == h.rtxSSRC && h.rtxSSRC != 0 {
		h.rtxSeq++
	}
	// Written under the lock: the copy must not be let go meanwhile, and a
	// packet write takes microseconds.
	if _, err := h.w.Write(&hdr, payload, nil); err != nil {
		return false, true
	}
	s.resentAt = now
	return true, true
}

func (h *history) setRTT(rtt time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rtt = rtt
}

// clear lets go of every copy.
func (h *history) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clearLocked()
}

func (h *history) clearLocked() {
	for i := range h.ring {
		h.ring[i].release()
	}
}

func (s *sentPacket) release() {
	if s.buf != nil {
		putPacketBuf(s.buf)
		s.buf = nil
	}
}

// Packet copies come from pools by size class, shared by every stream of
// every connection, so a copy costs what the packet needs rather than a
// full MTU, and steady forwarding allocates nothing.
var packetSizes = [...]int{256, 512, 768, 1024, 1280, 1536}

var packetPools [len(packetSizes)]sync.Pool

// getPacketBuf returns an empty buffer with room for n bytes.
func getPacketBuf(n int) *[]byte {
	for i, size := range packetSizes {
		if n <= size {
			if b, ok := packetPools[i].Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, 0, size)
			return &b
		}
	}
	b := make([]byte, 0, n) // larger than any MTU: not pooled
	return &b
}

// putPacketBuf gives a buffer from getPacketBuf back.
func putPacketBuf(b *[]byte) {
	for i, size := range packetSizes {
		if cap(*b) == size {
			packetPools[i].Put(b)
			return
		}
	}
}
