// Package signaling is medcall's WebSocket protocol (signaling/PROTOCOL.md):
// it admits participants with join tokens and relays SDP, ICE candidates and
// media notices between their clients and the SFU.
package signaling

import (
	"github.com/medcall/medcall/sfu"
	"github.com/pion/webrtc/v4"
)

// Version is the protocol version served at /v1/signal.
const Version = 1

// Message is every protocol message, in both directions. Fields not used by a
// message type are omitted. PROTOCOL.md is the reference; a test keeps the two
// in step.
type Message struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`

	// join
	Token        string `json:"token,omitempty"`
	Consultation string `json:"consultation,omitempty"`
	// Resume (join: the secret a joined reply gave, to take the participant
	// over on a new socket; joined: this participant's secret) and Resumed
	// (joined: the join resumed a participant whose connections go on).
	Resume  string `json:"resume,omitempty"`
	Resumed bool   `json:"resumed,omitempty"`

	// offer, answer, candidate
	PC        string                   `json:"pc,omitempty"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`

	// media
	Audio *bool  `json:"audio,omitempty"`
	Video *bool  `json:"video,omitempty"`
	Path  string `json:"path,omitempty"`

	// joined, participant
	Participant  *Peer  `json:"participant,omitempty"`
	Participants []Peer `json:"participants,omitzero"` // joined: always present, [] for the first joiner
	Recording    *bool  `json:"recording,omitempty"`
	Event        string `json:"event,omitempty"`
	// ICEServers (joined only) are the STUN/TURN servers, with this
	// participant's short-lived credentials, for both peer connections.
	ICEServers []ICEServer `json:"iceServers,omitempty"`

	// redirect: the node that hosts the consultation (ws:// or wss://)
	URL string `json:"url,omitempty"`

	// bye, error
	Reason  string `json:"reason,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Peer describes a participant to the others.
type Peer struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	Audio bool   `json:"audio"`
	Video bool   `json:"video"`
}

// ICEServer is one entry of joined.iceServers, shaped like the browser's
// RTCIceServer: TURN REST credentials valid for a few minutes, for this
// participant only, refused once they leave.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Message types.
const (
	TypeJoin        = "join"
	TypeJoined      = "joined"
	TypeOffer       = "offer"
	TypeAnswer      = "answer"
	TypeCandidate   = "candidate"
	TypeMedia       = "media"
	TypeLeave       = "leave"
	TypePing        = "ping"
	TypePong        = "pong"
	TypeAck         = "ack"
	TypeParticipant = "participant"
	TypeBye         = "bye"
	TypeError       = "error"
	TypeRedirect    = "redirect" // reply to join: the consultation lives on another node
	TypeRestart     = "restart"  // ICE restart of the subscribe connection (a network change)
)

// Error codes sent in error messages.
const (
	CodeBadMessage        = "bad_message"        // not JSON, or a field has the wrong type
	CodeUnknownType       = "unknown_type"       // type is missing or is not a client request
	CodeTooLarge          = "too_large"          // message over the size limit
	CodeRateLimited       = "rate_limited"       // too many messages per second
	CodeNotJoined         = "not_joined"         // a request before join succeeded
	CodeAlreadyJoined     = "already_joined"     // a second join on one socket
	CodeTokenMissing      = "token_missing"      // join without a token
	CodeTokenInvalid      = "token_invalid"      // signature, algorithm, key, aud or claims wrong
	CodeTokenExpired      = "token_expired"      // exp passed (or nbf not reached)
	CodeBadID             = "bad_id"             // an id does not match ^[A-Za-z0-9_-]{1,64}$
	CodeForbidden         = "forbidden"          // role rule broken (a patient's sub must equal pid)
	CodeWrongConsultation = "wrong_consultation" // join names a consultation its token is not for
	CodeBindingMismatch   = "binding_mismatch"   // cid already bound to another pid or rec
	CodeConsultationFull  = "consultation_full"  // participant limit reached
	CodeServerFull        = "server_full"        // no room for one more consultation (--max-consultations)
	CodeBadSDP            = "bad_sdp"            // SDP unparseable or not acceptable
	CodeBadCandidate      = "bad_candidate"      // ICE candidate refused
	CodeBadRequest        = "bad_request"        // a required field is missing or out of range
	CodeUnavailable       = "unavailable"        // the server is shutting down
	CodeInternal          = "internal"           // a server fault; retry later
	CodeResumeFailed      = "resume_failed"      // no participant to resume with that secret: join anew
)

// Upgrade paths named in media notices.
const (
	PathPrenegotiated = sfu.PathPrenegotiated
	PathRenegotiate   = sfu.PathRenegotiate
)

// Reasons a bye message gives.
const (
	ByeLeft             = "left"              // the client asked to leave
	ByeReplaced         = "replaced"          // the same participant joined on another socket
	ByeShutdown         = "shutdown"          // the server is stopping
	ByeConnectionFailed = "connection_failed" // a peer connection failed and did not recover in time
)

// ByeReasons are every reason a bye message may give.
var ByeReasons = []string{ByeLeft, ByeReplaced, ByeShutdown, ByeConnectionFailed}

// ClientRequests are the message types a client may send.
var ClientRequests = []string{TypeJoin, TypeOffer, TypeAnswer, TypeCandidate, TypeMedia, TypeLeave, TypePing, TypeRestart}

// ServerMessages are the message types the server sends.
var ServerMessages = []string{TypeJoined, TypeAnswer, TypeAck, TypePong, TypeError, TypeOffer, TypeCandidate, TypeParticipant, TypeBye, TypeRedirect}

// ErrorCodes are every code an error message may carry.
var ErrorCodes = []string{
	CodeBadMessage, CodeUnknownType, CodeTooLarge, CodeRateLimited, CodeNotJoined,
	CodeAlreadyJoined, CodeTokenMissing, CodeTokenInvalid, CodeTokenExpired, CodeBadID,
	CodeForbidden, CodeWrongConsultation, CodeBindingMismatch, CodeConsultationFull, CodeServerFull,
	CodeBadSDP, CodeBadCandidate, CodeBadRequest, CodeUnavailable, CodeInternal,
	CodeResumeFailed,
}
