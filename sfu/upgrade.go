package sfu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// upgradeState is where a published track is in its life, above all a video
// track in an upgrade from an audio-only call. It is the one place that
// state lives: the Receiver acts on its transitions (timing the upgrade,
// asking for a keyframe, making subscribers wait for one), the forwarding
// loop reads it, rate control counts the tracks it says are forwarded.
//
// A video track, by event (a blank is an illegal transition, refused):
//
//	state       on          off      rtp        keyframe
//	idle        requested   off      starting
//	requested   requested   off      starting
//	starting    starting    paused              flowing
//	flowing     flowing     paused              flowing
//	off         requested   off      paused
//	paused      starting    paused
//
// The usual upgrade is idle → requested (the notice or re-offer) →
// starting (its first RTP; a keyframe is asked for) → flowing (the first
// keyframe forwarded: the upgrade's latency is measured here). The
// pre-negotiated path may skip requested (RTP before the notice); a
// downgrade is flowing → paused, and the next upgrade paused → starting.
//
// An audio track has no upgrade and no keyframe to wait for:
//
//	state       on          off      rtp        keyframe
//	idle        idle        off      flowing
//	flowing     flowing     paused
//	off         idle        off      paused
//	paused      flowing     paused
//
// The tables are upgradeVideo and upgradeAudio; docs/architecture.md shows
// them too. A transition to the same state is legal and does nothing.
type upgradeState int32

// The states of a published track.
const (
	// stateIdle: announced by the publisher's offer, no RTP yet, nothing
	// asked for. For video this is the audio-only call (the idle
	// pre-negotiated transceiver).
	stateIdle upgradeState = iota
	// stateRequested: the publisher said video is coming (a media notice or a
	// re-offer adding video); no RTP yet. The upgrade is being timed.
	stateRequested
	// stateStarting: RTP arrives; subscribers wait for the first keyframe,
	// which has been asked for.
	stateStarting
	// stateFlowing: media is forwarded.
	stateFlowing
	// stateOff: the publisher said this kind is off before any RTP came.
	stateOff
	// statePaused: the publisher said this kind is off while RTP came (a
	// downgrade); what arrives is dropped.
	statePaused
	numUpgradeStates
)

var upgradeStateNames = [numUpgradeStates]string{"idle", "requested", "starting", "flowing", "off", "paused"}

func (s upgradeState) String() string {
	if s >= 0 && s < numUpgradeStates {
		return upgradeStateNames[s]
	}
	return fmt.Sprintf("upgradeState(%d)", int32(s))
}

// upgradeEvent is what moves a track between states.
type upgradeEvent int

// The events of a published track.
const (
	eventOn       upgradeEvent = iota // media notice on, or a re-offer adding video
	eventOff                          // media notice off
	eventRTP                          // the first RTP packet arrived
	eventKeyframe                     // a keyframe is being forwarded
	numUpgradeEvents
)

var upgradeEventNames = [numUpgradeEvents]string{"on", "off", "rtp", "keyframe"}

func (e upgradeEvent) String() string {
	if e >= 0 && e < numUpgradeEvents {
		return upgradeEventNames[e]
	}
	return fmt.Sprintf("upgradeEvent(%d)", int(e))
}

// illegal marks a transition that cannot happen: the event contradicts the
// state (a second first packet, a keyframe forwarded before RTP).
const illegal upgradeState = -1

// upgradeVideo is the transition table of a video track: the state an event
// leads to from each state. A transition to the same state is legal and
// does nothing (a notice repeating a re-offer, every keyframe after the first).
var upgradeVideo = [numUpgradeStates][numUpgradeEvents]upgradeState{
	//               on              off          rtp            keyframe
	stateIdle:      {stateRequested, stateOff, stateStarting, illegal},
	stateRequested: {stateRequested, stateOff, stateStarting, illegal},
	stateStarting:  {stateStarting, statePaused, illegal, stateFlowing},
	stateFlowing:   {stateFlowing, statePaused, illegal, stateFlowing},
	stateOff:       {stateRequested, stateOff, statePaused, illegal},
	statePaused:    {stateStarting, statePaused, illegal, illegal},
}

// upgradeAudio is the transition table of an audio track: no upgrade to
// time and no keyframe to wait for.
var upgradeAudio = [numUpgradeStates][numUpgradeEvents]upgradeState{
	//               on            off          rtp          keyframe
	stateIdle:      {stateIdle, stateOff, stateFlowing, illegal},
	stateRequested: {illegal, illegal, illegal, illegal},
	stateStarting:  {illegal, illegal, illegal, illegal},
	stateFlowing:   {stateFlowing, statePaused, illegal, illegal},
	stateOff:       {stateIdle, stateOff, statePaused, illegal},
	statePaused:    {stateFlowing, statePaused, illegal, illegal},
}

// errIllegalTransition is returned for an event the state does not allow.
var errIllegalTransition = fmt.Errorf("sfu: illegal track state transition")

// upgrade holds one track's state and the timing of its current upgrade.
// Its zero value is an idle video track's. Transitions take the lock; the
// forwarding loop reads the state without it (load).
type upgrade struct {
	audio bool // use upgradeAudio

	mu    sync.Mutex
	state upgradeState
	since time.Time // when the upgrade being timed began; zero if none
	path  string    // its path (PathPrenegotiated, PathRenegotiate)

	cur atomic.Int32 // state, for lock-free readers
}

// transition is what one event did, for the Receiver to act on.
type transition struct {
	from, to upgradeState
	// began: an upgrade started being timed (under path).
	began bool
	path  string
	// took is set when an upgrade completed (its first keyframe forwarded):
	// the time since it began.
	took time.Duration
}

// changed reports whether the state moved.
func (t transition) changed() bool { return t.from != t.to }

// load is the current state, without the lock.
func (u *upgrade) load() upgradeState { return upgradeState(u.cur.Load()) }

// forwarding reports whether media is being forwarded or about to be (RTP
// arrives and the publisher has not said it is off).
func (u *upgrade) forwarding() bool {
	s := u.load()
	return s == stateStarting || s == stateFlowing
}

// apply moves the track by ev at now. path names the upgrade path for eventOn
// (and for eventRTP with no notice first, it is PathPrenegotiated). An event
// the table does not allow changes nothing and returns errIllegalTransition.
func (u *upgrade) apply(ev upgradeEvent, path string, now time.Time) (transition, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	table := &upgradeVideo
	if u.audio {
		table = &upgradeAudio
	}
	from := u.state
	to := table[from][ev]
	if to == illegal {
		return transition{from: from, to: from}, fmt.Errorf("%w: %s on %s", errIllegalTransition, ev, from)
	}
	t := transition{from: from, to: to}
	if from == to {
		return t, nil
	}
	switch {
	case u.audio:
	case to == stateRequested || (to == stateStarting && from != stateRequested):
		// An upgrade begins: a notice or re-offer, a re-upgrade after a
		// downgrade, or video RTP with no notice before it.
		// With no path named (RTP before any notice, or a notice without
		// one) no SDP went round: it is the pre-negotiated path, and the
		// metric label stays in its bounded set.
		if ev == eventRTP || path == "" {
			path = PathPrenegotiated
		}
		u.since, u.path = now, path
		t.began, t.path = true, path
	case to == stateFlowing:
		t.path, t.took = u.path, now.Sub(u.since)
		u.since = time.Time{}
	case to == stateOff || to == statePaused:
		u.since = time.Time{} // abandoned before its keyframe: not timed
	}
	u.state = to
	u.cur.Store(int32(to))
	return t, nil
}
