package sfu

import (
	"sync/atomic"
	"time"
)

// Metrics are the SFU's counters. They are plain atomics so the forwarding
// loop never takes a lock for them; cmd exports them to Prometheus.
type Metrics struct {
	PacketsIn, BytesIn   [2]atomic.Uint64 // by kindIndex
	PacketsOut, BytesOut [2]atomic.Uint64
	DroppedGarbage       atomic.Uint64 // unparseable RTP
	DroppedWaitKeyframe  atomic.Uint64 // video before a subscriber's first keyframe
	DroppedMuted         atomic.Uint64 // arrived while the publisher said it was off
	DroppedWriteError    atomic.Uint64 // subscriber transport refused the packet
	// The own receive path (ownpath.go): RTP packets the UDP port's reader
	// took itself (forwarded there or queued), those of them it queued for
	// the forwarding pool or their stream's goroutine, those it dropped
	// with a stream's queue full, those that failed to authenticate, and
	// those seen before (both dropped too; a NACKed packet resent after
	// all is one).
	OwnPathPackets, OwnPathQueued, OwnPathDropped, OwnPathDecryptErrors, OwnPathDuplicates atomic.Uint64
	// OwnPathSent counts the RTP packets the own send path (ownsend.go)
	// encrypted and sent itself.
	OwnPathSent          atomic.Uint64
	OwnPathRTCP          atomic.Uint64 // subscribers' RTCP datagrams the port's reader read (ownrtcp.go)
	PLISent, PLIReceived atomic.Uint64
	FIRReceived          atomic.Uint64
	NACKReceived         atomic.Uint64 // from subscribers (answered by pion's responder)
	NACKSent             atomic.Uint64 // to publishers (from pion's generator)
	TracksPublished      [2]atomic.Uint64
	// KeyframeRequests counts keyframe requests by reason
	// (keyframerequest.go); KeyframeRequestsThrottled, those of them that
	// sent no PLI at once (a PLI already asked for, or a later one, answers
	// them). PLISent counts the PLIs themselves.
	KeyframeRequests, KeyframeRequestsThrottled [NumKeyframeReasons]atomic.Uint64
	// Loss repair (nackguard.go): packets subscribers asked for, those
	// refused at once as too old to be of use, and what was resent (the rest
	// was refused by the retransmission budget or the once-per-RTT rule).
	NACKedPackets, NACKStale            atomic.Uint64
	Retransmissions, RetransmittedBytes atomic.Uint64
	// FeedbackResends counts the resends that transport-cc feedback
	// prompted without a NACK (lossresend.go); Retransmissions includes them.
	FeedbackResends atomic.Uint64
	// ICERestarts counts ICE restarts applied, by connection: [0] publish
	// (the client re-offered with new credentials), [1] subscribe (the
	// server re-offered at the client's request).
	ICERestarts [2]atomic.Uint64
	// OnUpgradeStart, if set, is called when a video upgrade begins (a notice,
	// a re-offer adding video, or video RTP on a never-used transceiver).
	OnUpgradeStart func(path string)
	// OnUpgrade, if set, observes the time from an upgrade (the notice, or the
	// first video RTP when no notice came first) to the first keyframe forwarded.
	OnUpgrade func(path string, d time.Duration)
	// OnSelectedPair, if set, observes the candidate pair each connection
	// selects: the client candidate's type (host, srflx, prflx, relay) and
	// the transport protocol (udp, tcp).
	OnSelectedPair func(pc PC, candidateType, protocol string)
	// OnBandwidthEstimate, if set, observes each rate-control decision: a
	// subscriber downlink's estimate (DirectionDown) and the video bitrate
	// asked of a publisher (DirectionUpTarget), in bits/s.
	OnBandwidthEstimate func(direction string, bps uint64)
	// OnUDPQueueDelay, if set, observes how long each datagram waited in
	// the UDP port's kernel queue before the server read it (ingress.go;
	// --udp-port bound to one address, on Linux). It is called on the one
	// goroutine reading the port, so it must be quick.
	OnUDPQueueDelay func(d time.Duration)
	// OnForwardDelay, if set, observes how long each RTP packet the own
	// receive path took spent in the server, by kind: from the kernel's
	// receive time to the end of its fan-out (sent, or handed to pion, for
	// every subscriber, and handed to the recorder). Packets pion delivered
	// carry no receive time and are not observed. Called as each packet is
	// forwarded, from several goroutines at once (the port's reader, the
	// forwarding pool, the streams' goroutines), so it must be quick and
	// safe for concurrent use.
	OnForwardDelay func(kind Kind, d time.Duration)
}

func kindIndex(k Kind) int {
	if k == KindVideo {
		return 1
	}
	return 0
}
