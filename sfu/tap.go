package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Binding is the server-side, immutable binding of a consultation to its patient,
// made by the first accepted join. Everything downstream (recorder, storage keys)
// takes the patient and consultation ids from here and from nowhere else.
type Binding struct {
	Consultation string // cid
	Patient      string // pid
	Record       bool   // rec
}

// Kind is the media kind of a track.
type Kind string

// Media kinds.
const (
	KindAudio Kind = "audio"
	KindVideo Kind = "video"
)

// TrackInfo describes one published track to a tap.
type TrackInfo struct {
	Participant string // participant id (the token's sub, a pseudonym)
	Role        string // patient | clinician | guest
	Kind        Kind
	MimeType    string // e.g. "audio/opus", "video/VP8", "video/VP9"
	ClockRate   uint32
	Channels    uint16
	SSRC        uint32 // the publisher's SSRC
	// RequestKeyframe asks the publisher for a keyframe, saying why (a PLI,
	// throttled and retried by the SFU until a keyframe is forwarded: one
	// request per need is enough). Safe to call from any goroutine; a no-op
	// for audio.
	RequestKeyframe func(reason KeyframeReason)
}

// TrackSink receives one published track's packets in-process. The SFU calls
// WriteRTP for one packet at a time, from the goroutine forwarding the track
// (the track's own, or the UDP port's reader on the own receive path,
// ownstream.go), and never waits for the sink:
// an implementation must return at once (queue and drop, never block) and must
// not retain pkt or its payload after returning.
//
// A packet the SFU does not forward (a padding-only bandwidth probe, media the
// publisher said is off) still reaches WriteRTP, with an empty payload: the
// sink sees every sequence number, so only a real loss leaves a gap. An empty
// payload is never media.
type TrackSink interface {
	WriteRTP(pkt *rtp.Packet)
	// OnRTCP delivers the publisher's sender reports for this track.
	OnRTCP(sr *rtcp.SenderReport)
	// Close says the track has ended (publisher left or the track was removed).
	Close()
}

// EventType names a consultation event reported to a tap.
type EventType string

// Consultation events.
const (
	EventJoined    EventType = "joined"
	EventLeft      EventType = "left"
	EventUpgrade   EventType = "upgrade"   // video on
	EventDowngrade EventType = "downgrade" // video off
	EventAudioOn   EventType = "audio_on"
	EventAudioOff  EventType = "audio_off"
	// EventICERestart: the participant's network changed and its publish
	// connection restarted ICE; its media has a gap around this offset.
	EventICERestart EventType = "ice_restart"
)

// EventTypes are every event a tap is told of, as the manifest names them.
var EventTypes = []EventType{EventJoined, EventLeft, EventUpgrade, EventDowngrade, EventAudioOn, EventAudioOff, EventICERestart}

// Upgrade paths, as media notices and the manifest name them.
const (
	PathPrenegotiated = "prenegotiated"
	PathRenegotiate   = "renegotiate"
)

// Event is something that happened in a consultation, for the manifest.
type Event struct {
	Time        time.Time
	Type        EventType
	Participant string
	Role        string
	Path        string // upgrade path for EventUpgrade: "renegotiate" or "prenegotiated"
}

// Tap consumes one consultation's media in-process, like a subscriber with no SRTP.
// The SFU calls its methods from several goroutines; implementations synchronise.
type Tap interface {
	// OnTrack is called when a published track starts flowing. A nil sink means
	// the tap is not interested in this track.
	OnTrack(info TrackInfo) TrackSink
	// OnEvent reports joins, leaves and media changes.
	OnEvent(ev Event)
	// Close is called once when the consultation ends (everyone left or the server stops).
	Close()
}

// TapFactory opens a tap for a consultation when it starts. It is called once per
// consultation session with the server-side binding; returning a nil Tap means
// nothing taps this consultation (for a recorder: rec is false).
type TapFactory func(b Binding) Tap
