package sfu_test

import (
	"context"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
	"github.com/medcall/medcall/signaling/token"
)

// TestOwnReceivePathCall holds an upgraded call on the own receive path,
// with 5 % of the patient's packets lost before they reach the network.
// The UDP port's reader takes nearly all RTP itself, the clinician gets
// the patient's audio and decodable video, and the receive interceptors,
// now in medcall's own chain, still do their work: the patient gets
// receiver reports that echo its sender reports, transport-cc feedback,
// and NACKs for what it lost. After an ICE restart the path goes on.
func TestOwnReceivePathCall(t *testing.T) {
	m := &sfu.Metrics{}
	env := signaltest.Start(t, sfu.Config{UDPPort: signaltest.FreeUDPPort(t), OwnReceivePath: true, Metrics: m})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(tok string, drop float64) *client.Client {
		c, err := client.Dial(ctx, client.Options{URL: env.URL, Token: tok, AudioFile: "../testdata/audio.ogg",
			VideoFile: "../testdata/video.ivf", Prenegotiate: true, DropRate: drop, TransportCC: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pat := dial(env.Mint(signaltest.Claims("p-1", token.RolePatient, "c-1", "p-1", false)), 0.05)
	doc := dial(env.Mint(signaltest.Claims("d-1", token.RoleClinician, "c-1", "p-1", false)), 0)
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
		t.Fatalf("no audio: %v", err)
	}
	if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	v, err := doc.WaitReceived(ctx, "p-1", "video", func(s client.TrackStats) bool { return s.Keyframes >= 2 && s.Packets >= 300 })
	if err != nil {
		t.Fatalf("no video after the upgrade: %v", err)
	}
	in := m.PacketsIn[0].Load() + m.PacketsIn[1].Load()
	own := m.OwnPathPackets.Load()
	t.Logf("own path %d of %d RTP packets received; video at the clinician: %d packets, %d keyframes", own, in, v.Packets, v.Keyframes)
	if own < in*9/10 {
		t.Errorf("the own receive path took %d of %d RTP packets received; want nearly all", own, in)
	}
	if n := m.OwnPathDecryptErrors.Load(); n != 0 {
		t.Errorf("%d packets failed to decrypt", n)
	}
	// An ICE restart keeps the DTLS session, and so the keys: the path goes
	// on taking the media.
	if err := pat.RestartICE(ctx); err != nil {
		t.Fatal(err)
	}
	own, in = m.OwnPathPackets.Load(), m.PacketsIn[0].Load()+m.PacketsIn[1].Load()
	after := doc.Received("p-1", "audio").Packets + 100
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= after }); err != nil {
		t.Fatalf("no audio after an ICE restart: %v", err)
	}
	own, in = m.OwnPathPackets.Load()-own, m.PacketsIn[0].Load()+m.PacketsIn[1].Load()-in
	t.Logf("after an ICE restart the own path took %d of %d RTP packets", own, in)
	if own < in*9/10 {
		t.Errorf("after an ICE restart the own receive path took %d of %d RTP packets; want nearly all", own, in)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fb := pat.FeedbackReceived()
		if fb.EchoedSenderReports > 0 && fb.TransportCC > 0 && fb.NACKs > 0 && m.NACKSent.Load() > 0 {
			t.Logf("the patient got %d receiver reports (%d blocks echoing its sender reports), %d transport-cc feedback, %d NACKs",
				fb.ReceiverReports, fb.EchoedSenderReports, fb.TransportCC, fb.NACKs)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the patient's feedback: %+v, NACKs sent by the server %d; want receiver reports echoing its sender reports, transport-cc and NACKs", fb, m.NACKSent.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
