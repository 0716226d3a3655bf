package sfu

import (
	"errors"
	"testing"
	"time"
)

// The transition tables, written out again as the specification: every
// (state, event) pair of each kind, legal ones with the state they lead to.
// A pair missing here must be refused.
var (
	wantVideo = map[upgradeState]map[upgradeEvent]upgradeState{
		stateIdle:      {eventOn: stateRequested, eventOff: stateOff, eventRTP: stateStarting},
		stateRequested: {eventOn: stateRequested, eventOff: stateOff, eventRTP: stateStarting},
		stateStarting:  {eventOn: stateStarting, eventOff: statePaused, eventKeyframe: stateFlowing},
		stateFlowing:   {eventOn: stateFlowing, eventOff: statePaused, eventKeyframe: stateFlowing},
		stateOff:       {eventOn: stateRequested, eventOff: stateOff, eventRTP: statePaused},
		statePaused:    {eventOn: stateStarting, eventOff: statePaused},
	}
	wantAudio = map[upgradeState]map[upgradeEvent]upgradeState{
		stateIdle:    {eventOn: stateIdle, eventOff: stateOff, eventRTP: stateFlowing},
		stateFlowing: {eventOn: stateFlowing, eventOff: statePaused},
		stateOff:     {eventOn: stateIdle, eventOff: stateOff, eventRTP: statePaused},
		statePaused:  {eventOn: stateFlowing, eventOff: statePaused},
	}
)

// at puts an upgrade in state s directly (as if it had got there).
func at(audio bool, s upgradeState) *upgrade {
	u := &upgrade{audio: audio, state: s}
	u.cur.Store(int32(s))
	return u
}

// Every legal transition leads where the table says; every other one is
// refused and leaves the state as it was.
func TestUpgradeTransitions(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	for _, kind := range []struct {
		name  string
		audio bool
		want  map[upgradeState]map[upgradeEvent]upgradeState
	}{{"video", false, wantVideo}, {"audio", true, wantAudio}} {
		legal, refused := 0, 0
		for s := range numUpgradeStates {
			for ev := range numUpgradeEvents {
				u := at(kind.audio, s)
				tr, err := u.apply(ev, PathPrenegotiated, now)
				to, ok := kind.want[s][ev]
				if !ok {
					refused++
					if !errors.Is(err, errIllegalTransition) {
						t.Errorf("%s: %s on %s: err %v, want it refused", kind.name, ev, s, err)
					}
					if u.load() != s || u.state != s || tr.changed() {
						t.Errorf("%s: refused %s on %s moved the state to %s", kind.name, ev, s, u.load())
					}
					continue
				}
				legal++
				if err != nil {
					t.Errorf("%s: %s on %s refused: %v", kind.name, ev, s, err)
					continue
				}
				if tr.from != s || tr.to != to || u.load() != to || u.state != to {
					t.Errorf("%s: %s on %s went %s → %s (now %s), want → %s", kind.name, ev, s, tr.from, tr.to, u.load(), to)
				}
			}
		}
		t.Logf("%s: %d legal transitions, %d refused", kind.name, legal, refused)
	}
}

// An upgrade is timed from where it begins to its first keyframe, under the
// path that began it; repeating the notice or a re-offer does not restart it.
func TestUpgradeTiming(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	type step struct {
		ev    upgradeEvent
		path  string
		after time.Duration // since t0
		began string        // the path an upgrade began under, or ""
		took  time.Duration // the upgrade completed after this (0: it did not)
	}
	for _, c := range []struct {
		name  string
		from  upgradeState
		steps []step
	}{
		{"renegotiated: re-offer, notice, RTP, keyframe", stateIdle, []step{
			{eventOn, PathRenegotiate, 0, PathRenegotiate, 0},
			{eventOn, PathRenegotiate, 10 * time.Millisecond, "", 0},
			{eventRTP, "", 40 * time.Millisecond, "", 0},
			{eventKeyframe, "", 90 * time.Millisecond, "", 90 * time.Millisecond},
			{eventKeyframe, "", 200 * time.Millisecond, "", 0},
		}},
		{"pre-negotiated, RTP before the notice", stateIdle, []step{
			{eventRTP, "", 0, PathPrenegotiated, 0},
			{eventOn, PathPrenegotiated, 5 * time.Millisecond, "", 0},
			{eventKeyframe, "", 30 * time.Millisecond, "", 30 * time.Millisecond},
		}},
		{"said off at join, then upgraded", stateOff, []step{
			{eventOn, PathPrenegotiated, 0, PathPrenegotiated, 0},
			{eventRTP, "", 20 * time.Millisecond, "", 0},
			{eventKeyframe, "", 50 * time.Millisecond, "", 50 * time.Millisecond},
		}},
		{"downgrade and upgrade again, by a notice naming no path", stateFlowing, []step{
			{eventOff, "", 0, "", 0},
			{eventOn, "", time.Second, PathPrenegotiated, 0},
			{eventKeyframe, "", time.Second + 70*time.Millisecond, "", 70 * time.Millisecond},
		}},
		{"abandoned before its keyframe, then again", stateIdle, []step{
			{eventOn, PathRenegotiate, 0, PathRenegotiate, 0},
			{eventRTP, "", 10 * time.Millisecond, "", 0},
			{eventOff, "", 20 * time.Millisecond, "", 0},
			{eventOn, PathPrenegotiated, time.Second, PathPrenegotiated, 0},
			{eventKeyframe, "", time.Second + 15*time.Millisecond, "", 15 * time.Millisecond},
		}},
	} {
		u := at(false, c.from)
		var timing string // the path of the upgrade being timed
		for i, s := range c.steps {
			tr, err := u.apply(s.ev, s.path, t0.Add(s.after))
			if err != nil {
				t.Fatalf("%s: step %d: %v", c.name, i, err)
			}
			began := ""
			if tr.began {
				began = tr.path
			}
			if began != s.began || tr.took != s.took {
				t.Errorf("%s: step %d (%s): began %q took %v, want began %q took %v", c.name, i, s.ev, began, tr.took, s.began, s.took)
			}
			if tr.began {
				timing = tr.path
			}
			if s.took != 0 && tr.path != timing {
				t.Errorf("%s: step %d: completed under path %q, began under %q", c.name, i, tr.path, timing)
			}
		}
	}
}

// An audio track never times an upgrade.
func TestUpgradeAudioIsNeverTimed(t *testing.T) {
	u := at(true, stateIdle)
	now := time.Unix(1_000_000, 0)
	for _, ev := range []upgradeEvent{eventOn, eventRTP, eventOff, eventOn} {
		tr, err := u.apply(ev, PathPrenegotiated, now)
		if err != nil || tr.began || tr.took != 0 {
			t.Errorf("audio %s: %+v, %v", ev, tr, err)
		}
	}
	if u.load() != stateFlowing {
		t.Errorf("audio after on, rtp, off, on is %s, want flowing", u.load())
	}
}

// forwarding is what rate control counts: media arriving and not said off.
func TestUpgradeForwarding(t *testing.T) {
	for s := range numUpgradeStates {
		want := s == stateStarting || s == stateFlowing
		if got := at(false, s).forwarding(); got != want {
			t.Errorf("%s: forwarding %v, want %v", s, got, want)
		}
	}
	var zero upgrade
	if zero.load() != stateIdle || zero.forwarding() {
		t.Errorf("zero upgrade is %s, want idle and not forwarding", zero.load())
	}
}
