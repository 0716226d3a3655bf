// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package gcc

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

var (
	errMissingTWCCExtension = errors.New("missing transport layer cc header extension")
	errInvalidFeedback      = errors.New("invalid feedback")
)

// acknowledgment is a packet sent, and when it arrived (zero: it did not).
type acknowledgment struct {
	SequenceNumber uint16 // transport-wide
	Size           int
	Departure      time.Time
	Arrival        time.Time
}

// historySize is how many packets sent the adapter remembers (pion's
// keeps 250): feedback on older ones is ignored.
const historySize = 256

// It must divide 65,536, so that the slots follow sequence numbers across
// their wrap.
var _ = [1]struct{}{}[65536%historySize]

// sentPacket is a slot of the history: the packet whose transport-wide
// sequence number is the slot's index modulo historySize, if any.
type sentPacket struct {
	ok        bool
	seq       uint16
	size      int32
	departure time.Time
}

// feedbackAdapter maps transport-cc feedback to the packets it reports on.
// It is pion's (internal/cc), modified for medcall: its history, a map and
// a list holding one allocation per packet, replaced by an array indexed
// by the transport-wide sequence number, and RFC 8888 feedback left out
// (medcall negotiates transport-cc only; pion also recorded the packets of
// a stream without transport-cc, for RFC 8888, and this does not).
type feedbackAdapter struct {
	lock                     sync.Mutex
	history                  [historySize]sentPacket
	referenceTime            int64
	referenceTimeInitialized bool
}

func (f *feedbackAdapter) get(seq uint16) (acknowledgment, bool) {
	p := &f.history[seq%historySize]
	if !p.ok || p.seq != seq {
		return acknowledgment{}, false
	}
	return acknowledgment{SequenceNumber: seq, Size: int(p.size), Departure: p.departure}, true
}

// onSent records that a packet, stamped with the transport-wide sequence
// number in extension extID, was sent at ts; size is its payload's.
func (f *feedbackAdapter) onSent(ts time.Time, extID uint8, header *rtp.Header, size int) error {
	var ext rtp.TransportCCExtension
	if err := ext.Unmarshal(header.GetExtension(extID)); err != nil {
		return errMissingTWCCExtension
	}
	seq := ext.TransportSequence
	f.lock.Lock()
	defer f.lock.Unlock()
	p := &f.history[seq%historySize]
	if p.ok && int16(seq-p.seq) < 0 { //nolint:gosec // serial number arithmetic
		// The numbers are stamped before this is called, by writers that
		// may race: one held up for a whole history must not overwrite a
		// newer packet (pion's would have evicted it as the oldest).
		return nil
	}
	*p = sentPacket{
		ok: true, seq: seq,
		size:      int32(header.MarshalSize() + size), //nolint:gosec // a packet's size
		departure: ts,
	}
	return nil
}

// inRange is every packet remembered in [start, start+count), in order,
// none of them received: for a chunk longer than the history.
func (f *feedbackAdapter) inRange(acks []acknowledgment, start, count uint16) []acknowledgment {
	from := len(acks)
	for i := range f.history {
		if p := &f.history[i]; p.ok && p.seq-start < count {
			acks = append(acks, acknowledgment{SequenceNumber: p.seq, Size: int(p.size), Departure: p.departure})
		}
	}
	slices.SortFunc(acks[from:], func(a, b acknowledgment) int {
		return int(a.SequenceNumber-start) - int(b.SequenceNumber-start)
	})
	return acks
}

// unpackRunLengthChunk reads at most maxStatuses packet statuses from the
// chunk (the feedback's PacketStatusCount bounds every chunk) and appends
// the packets they report on to acks.
func (f *feedbackAdapter) unpackRunLengthChunk(
	acks []acknowledgment, start uint16, refTime time.Time, chunk *rtcp.RunLengthChunk, deltas []*rtcp.RecvDelta, maxStatuses uint16,
) (consumedDeltas int, nextRef time.Time, statusCount uint16, _ []acknowledgment, err error) {
	count := min(chunk.RunLength, maxStatuses)
	deltaIndex := 0
	if (chunk.PacketStatusSymbol == rtcp.TypeTCCPacketNotReceived ||
		chunk.PacketStatusSymbol == rtcp.TypeTCCPacketReceivedWithoutDelta) && int(count) > historySize {
		return 0, refTime, count, f.inRange(acks, start, count), nil
	}

	end := start + count
	for sequenceNumber := start; sequenceNumber != end; sequenceNumber++ {
		var arrival time.Time
		if chunk.PacketStatusSymbol == rtcp.TypeTCCPacketReceivedSmallDelta ||
			chunk.PacketStatusSymbol == rtcp.TypeTCCPacketReceivedLargeDelta {
			if len(deltas)-1 < deltaIndex {
				return deltaIndex, refTime, count, acks, errInvalidFeedback
			}
			refTime = refTime.Add(time.Duration(deltas[deltaIndex].Delta) * time.Microsecond)
			arrival = refTime
			deltaIndex++
		}
		if ack, ok := f.get(sequenceNumber); ok {
			ack.Arrival = arrival
			acks = append(acks, ack)
		}
	}

	return deltaIndex, refTime, count, acks, nil
}

// unpackStatusVectorChunk reads at most maxStatuses symbols from the chunk
// and appends the packets they report on to acks.
func (f *feedbackAdapter) unpackStatusVectorChunk(
	acks []acknowledgment, start uint16, refTime time.Time, chunk *rtcp.StatusVectorChunk, deltas []*rtcp.RecvDelta, maxStatuses uint16,
) (consumedDeltas int, nextRef time.Time, statusCount uint16, _ []acknowledgment, err error) {
	symbols := chunk.SymbolList[:min(len(chunk.SymbolList), int(maxStatuses))]
	deltaIndex := 0
	for i, symbol := range symbols {
		var arrival time.Time
		if symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta {
			if len(deltas)-1 < deltaIndex {
				return deltaIndex, refTime, uint16(len(symbols)), acks, errInvalidFeedback //nolint:gosec // G115
			}
			refTime = refTime.Add(time.Duration(deltas[deltaIndex].Delta) * time.Microsecond)
			arrival = refTime
			deltaIndex++
		}
		if ack, ok := f.get(start + uint16(i)); ok { //nolint:gosec // G115
			ack.Arrival = arrival
			acks = append(acks, ack)
		}
	}

	return deltaIndex, refTime, uint16(len(symbols)), acks, nil //nolint:gosec // G115
}

// onTransportCCFeedback converts transport-cc feedback to acknowledgments.
func (f *feedbackAdapter) onTransportCCFeedback(feedback *rtcp.TransportLayerCC) ([]acknowledgment, error) {
	f.lock.Lock()
	defer f.lock.Unlock()

	// One slice for the whole feedback; it cannot hold more packets than
	// the history.
	result := make([]acknowledgment, 0, min(int(feedback.PacketStatusCount), historySize))
	index := feedback.BaseSequenceNumber
	referenceTime := int64(feedback.ReferenceTime & 0xffffff)
	if f.referenceTimeInitialized {
		// Choose the nearest epoch.
		delta := (referenceTime-f.referenceTime+(1<<23))&0xffffff - (1 << 23)
		referenceTime = f.referenceTime + delta
	}
	refTime := time.Time{}.Add(time.Duration(referenceTime) * 64 * time.Millisecond)
	recvDeltas := feedback.RecvDeltas
	// PacketStatusCount is the number of packets the feedback reports on;
	// symbols beyond it are padding.
	remaining := feedback.PacketStatusCount

	for _, chunk := range feedback.PacketChunks {
		if remaining == 0 {
			break
		}
		var (
			n           int
			nextRefTime time.Time
			statusCount uint16
			err         error
		)
		switch chunk := chunk.(type) {
		case *rtcp.RunLengthChunk:
			n, nextRefTime, statusCount, result, err = f.unpackRunLengthChunk(result, index, refTime, chunk, recvDeltas, remaining)
		case *rtcp.StatusVectorChunk:
			n, nextRefTime, statusCount, result, err = f.unpackStatusVectorChunk(result, index, refTime, chunk, recvDeltas, remaining)
		default:
			return nil, errInvalidFeedback
		}
		if err != nil {
			return nil, err
		}
		refTime = nextRefTime
		recvDeltas = recvDeltas[n:]
		index += statusCount
		remaining -= statusCount
	}

	if feedback.PacketStatusCount > 0 {
		f.referenceTime = referenceTime
		f.referenceTimeInitialized = true
	}

	return result, nil
}
