package sfu

import (
	"strings"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// binding is what pion hands a DownTrack when a subscriber's sender starts.
type binding struct {
	w    webrtc.TrackLocalWriter
	ssrc uint32
	pt   uint8
}

// DownTrack is one subscriber's copy of a published track. It implements
// webrtc.TrackLocal so pion binds it to the subscriber's sender; WriteRTP
// rewrites SSRC, payload type and sequence numbers for that subscriber.
//
// WriteRTP is called for one packet of the track at a time, by whichever
// goroutine forwards it (the Receiver's, or on the own receive path the UDP
// port's reader, under the stream's lock: ownstream.go), so the sequence
// state needs no lock of its own; the binding arrives from pion's
// goroutines and is an atomic pointer.
type DownTrack struct {
	recv   *Receiver
	sub    *Participant
	sender *webrtc.RTPSender
	bound  atomic.Pointer[binding]
	// resync (video): drop until the next keyframe. Not the track's state
	// (upgrade.go) but this subscriber's decoder: set when it binds, and
	// by Receiver.event when a paused track resumes.
	resync atomic.Bool
	red    atomic.Pointer[redEncoder] // audio: wrapped in RED where negotiated (red.go)

	// Forwarding state (one packet at a time, see above).
	started   bool
	dropping  bool   // a packet was dropped since the last one forwarded
	guard     bool   // refuse packets older than resumeOut
	offset    uint16 // added to incoming sequence numbers
	lastOut   uint16 // highest sequence number sent
	resumeOut uint16 // first sequence number sent after the last gap
	hdr       rtp.Header
}

func newDownTrack(r *Receiver, sub *Participant) *DownTrack {
	d := &DownTrack{recv: r, sub: sub}
	d.resync.Store(r.kind == KindVideo)
	return d
}

// ID is the track id seen by the subscriber: "{participant}-{kind}".
func (d *DownTrack) ID() string { return d.recv.owner.id + "-" + string(d.recv.kind) }

// StreamID is the publishing participant's id, so a subscriber can tell whose media it is.
func (d *DownTrack) StreamID() string { return d.recv.owner.id }

// RID is empty: medcall does not use simulcast.
func (d *DownTrack) RID() string { return "" }

// Kind is audio or video.
func (d *DownTrack) Kind() webrtc.RTPCodecType {
	if d.recv.kind == KindVideo {
		return webrtc.RTPCodecTypeVideo
	}
	return webrtc.RTPCodecTypeAudio
}

// Bind is called by pion when the subscriber's sender starts. It picks the
// publisher's codec among the negotiated ones and asks the publisher for a
// keyframe so the new subscriber can start decoding at once.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	mime, codecs := d.recv.mime(), ctx.CodecParameters()
	d.red.Store(nil)
	if red, primary, ok := redFor(mime, codecs); ok {
		mime, codecs = red.MimeType, []webrtc.RTPCodecParameters{red}
		d.red.Store(newREDEncoder(primary))
	}
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, mime) {
			d.resync.Store(d.recv.kind == KindVideo)
			d.bound.Store(&binding{w: ctx.WriteStream(), ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType)})
			d.recv.RequestKeyframe(KeyframeSubscriberBind)
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

// Unbind is called by pion when the sender stops.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(nil)
	return nil
}

// writeRTP forwards one packet. keyframe says pkt starts a keyframe.
func (d *DownTrack) writeRTP(pkt *rtp.Packet, keyframe bool, m *Metrics) bool {
	b := d.bound.Load()
	if b == nil {
		d.dropping = d.started
		return false
	}
	if d.resync.Load() {
		if !keyframe {
			m.DroppedWaitKeyframe.Add(1)
			d.dropping = d.started
			return false
		}
		d.resync.Store(false)
	}
	first := !d.started
	if first || d.dropping {
		// Close the gap so the subscriber sees contiguous sequence numbers.
		d.offset = 0
		if !first {
			d.offset = d.lastOut + 1 - pkt.SequenceNumber
		}
		d.started, d.dropping, d.guard = true, false, true
		d.resumeOut = pkt.SequenceNumber + d.offset
	}
	out := pkt.SequenceNumber + d.offset
	if d.guard {
		// A late packet from before the resume point would reuse a sequence
		// number the subscriber has already seen. The guard lifts once the
		// stream is well past the resume point, so wrap-around is no issue.
		if int16(out-d.resumeOut) < 0 {
			return false
		}
		if out-d.resumeOut > 1000 {
			d.guard = false
		}
	}
	if first || int16(out-d.lastOut) > 0 {
		d.lastOut = out
	}
	// The header is rewritten in the downtrack's own scratch space: a local
	// would escape through the writer interface and allocate per packet.
	h := &d.hdr
	*h = pkt.Header
	h.SSRC = b.ssrc
	h.PayloadType = b.pt
	h.SequenceNumber = out
	// The publisher's header extensions were negotiated on its own connection;
	// the subscriber's interceptors add their own.
	h.Extension, h.Extensions, h.ExtensionProfile = false, nil, 0
	h.Padding, h.PaddingSize = false, 0
	payload := pkt.Payload
	if red := d.red.Load(); red != nil {
		payload = red.encode(pkt)
	}
	if _, err := b.w.WriteRTP(h, payload); err != nil {
		m.DroppedWriteError.Add(1)
		return false
	}
	return true
}

// skip notes a packet this downtrack will not send, so the next one sent
// closes the gap in sequence numbers. Called as WriteRTP is.
func (d *DownTrack) skip() { d.dropping = d.started }

// requestResync makes a video downtrack wait for the next keyframe.
func (d *DownTrack) requestResync() {
	if d.recv.kind == KindVideo {
		d.resync.Store(true)
	}
}
