package signaling_test

import (
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

func atLeast(n uint64) func(client.TrackStats) bool {
	return func(s client.TrackStats) bool { return s.Packets >= n }
}

func TestAudioFlowsBothWays(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat := e.dial(ctx, e.patient("p1", "c1"), false)
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), false)
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(10)); err != nil {
		t.Fatalf("clinician got no patient audio: %v", err)
	}
	if _, err := pat.WaitReceived(ctx, "d1", "audio", atLeast(10)); err != nil {
		t.Fatalf("patient got no clinician audio: %v", err)
	}
	// Count over one window in both directions: packets sent vs received.
	patSent0, _ := pat.Sent("audio")
	docSent0, _ := doc.Sent("audio")
	patRecv0, docRecv0 := pat.Received("d1", "audio"), doc.Received("p1", "audio")
	time.Sleep(3 * time.Second)
	pat.StopSending()
	doc.StopSending()
	time.Sleep(300 * time.Millisecond) // in-flight packets land
	patSent1, _ := pat.Sent("audio")
	docSent1, _ := doc.Sent("audio")
	for _, d := range []struct {
		name       string
		sent, recv uint64
	}{
		{"patient -> clinician", patSent1.Packets - patSent0.Packets, doc.Received("p1", "audio").Packets - docRecv0.Packets},
		{"clinician -> patient", docSent1.Packets - docSent0.Packets, pat.Received("d1", "audio").Packets - patRecv0.Packets},
	} {
		t.Logf("%s: sent %d, received %d", d.name, d.sent, d.recv)
		if d.sent < 100 {
			t.Errorf("%s: only %d packets sent in 3 s", d.name, d.sent)
		}
		if diff := float64(d.recv) - float64(d.sent); diff > 0.02*float64(d.sent) || diff < -0.02*float64(d.sent) {
			t.Errorf("%s: received %d of %d sent, more than 2%% apart", d.name, d.recv, d.sent)
		}
	}
}

func hasKeyframe(s client.TrackStats) bool { return s.Keyframes > 0 }

func TestUpgradeByRenegotiation(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat := e.dial(ctx, e.patient("p1", "c1"), false)
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), false)
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(20)); err != nil {
		t.Fatal(err)
	}
	if err := pat.Upgrade(ctx, signaling.PathRenegotiate); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	st, err := doc.WaitReceived(ctx, "p1", "video", hasKeyframe)
	if err != nil {
		t.Fatalf("clinician got no patient keyframe: %v", err)
	}
	if st.FirstPacket.IsZero() || st.FirstKeyframe.IsZero() {
		t.Fatalf("stats incomplete: %+v", st)
	}
	if _, err := doc.WaitEvent(ctx, mediaEvent("p1", true)); err != nil {
		t.Fatalf("no media event: %v", err)
	}
	// Audio kept flowing through the renegotiation.
	before := doc.Received("p1", "audio").Packets
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(before+25)); err != nil {
		t.Fatal(err)
	}
}

func TestUpgradePrenegotiatedNeedsNoSDP(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat := e.dial(ctx, e.patient("p1", "c1"), true)
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), true)
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(20)); err != nil {
		t.Fatal(err)
	}
	if _, err := pat.WaitReceived(ctx, "d1", "audio", atLeast(20)); err != nil {
		t.Fatal(err)
	}
	// Let the subscribe negotiations that follow the joins settle.
	time.Sleep(300 * time.Millisecond)
	patSDP, docSDP := pat.SDPCount(), doc.SDPCount()
	if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if _, err := doc.WaitReceived(ctx, "p1", "video", hasKeyframe); err != nil {
		t.Fatalf("clinician got no patient keyframe: %v", err)
	}
	if _, err := doc.WaitReceived(ctx, "p1", "video", atLeast(30)); err != nil {
		t.Fatal(err)
	}
	if got := pat.SDPCount(); got != patSDP {
		t.Errorf("patient exchanged %d SDP messages during the upgrade, want 0", got-patSDP)
	}
	if got := doc.SDPCount(); got != docSDP {
		t.Errorf("clinician exchanged %d SDP messages during the upgrade, want 0", got-docSDP)
	}
}

func mediaEvent(id string, video bool) func(signaling.Message) bool {
	return func(m signaling.Message) bool {
		return m.Type == signaling.TypeParticipant && m.Event == "media" && m.Participant != nil &&
			m.Participant.ID == id && m.Participant.Video == video
	}
}

func TestDowngradeStopsVideoAudioContinues(t *testing.T) {
	for _, path := range []string{signaling.PathPrenegotiated, signaling.PathRenegotiate} {
		t.Run(path, func(t *testing.T) {
			m := &sfu.Metrics{}
			e := newEnv(t, sfu.Config{Metrics: m})
			ctx := ctxT(t, 40*time.Second)
			pat := e.dial(ctx, e.patient("p1", "c1"), path == signaling.PathPrenegotiated)
			doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), true)
			if err := pat.Upgrade(ctx, path); err != nil {
				t.Fatal(err)
			}
			if _, err := doc.WaitReceived(ctx, "p1", "video", atLeast(30)); err != nil {
				t.Fatal(err)
			}
			if err := pat.Downgrade(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := doc.WaitEvent(ctx, mediaEvent("p1", false)); err != nil {
				t.Fatalf("no downgrade event: %v", err)
			}
			// Packets in flight at the notice may still land; after that, nothing.
			time.Sleep(200 * time.Millisecond)
			v0, a0 := doc.Received("p1", "video").Packets, doc.Received("p1", "audio").Packets
			pli0 := m.PLISent.Load()
			time.Sleep(time.Second)
			v1, a1 := doc.Received("p1", "video").Packets, doc.Received("p1", "audio").Packets
			if n := m.PLISent.Load() - pli0; n != 0 {
				t.Errorf("%d keyframe requests sent to the publisher while its video was off", n)
			}
			if v1 != v0 {
				t.Errorf("video still forwarded after downgrade: %d packets in 1s", v1-v0)
			}
			if a1-a0 < 35 {
				t.Errorf("audio slowed after downgrade: %d packets in 1s, want ~50", a1-a0)
			}
			// Re-upgrade by the fast path resumes video with a fresh keyframe.
			k0 := doc.Received("p1", "video").Keyframes
			if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
				t.Fatal(err)
			}
			if _, err := doc.WaitReceived(ctx, "p1", "video", func(s client.TrackStats) bool { return s.Keyframes > k0 }); err != nil {
				t.Fatalf("no keyframe after re-upgrade: %v", err)
			}
			// The first video RTP and the re-upgrade each asked for a keyframe.
			if n := m.KeyframeRequests[sfu.KeyframeUpgrade].Load(); n != 2 {
				t.Errorf("%d keyframe requests for an upgrade, want 2 (the first video, the re-upgrade)", n)
			}
			if _, err := doc.WaitEvent(ctx, mediaEvent("p1", true)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
