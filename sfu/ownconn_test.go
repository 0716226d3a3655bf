package sfu_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
	"github.com/medcall/medcall/signaling/token"
)

// TestOwnMediaPathCall holds an upgraded call on the own media path, both
// halves, with 5 % of the patient's packets lost before they reach the
// network. The UDP port's reader takes nearly all RTP itself, and the
// subscribe connections' own sender sends nearly all of it; the clinician
// gets the patient's audio and decodable video, and the receive
// interceptors, now in medcall's own chain, still do their work: the
// patient gets receiver reports that echo its sender reports,
// transport-cc feedback, and NACKs for what it lost. After an ICE restart
// of either connection the path goes on.
func TestOwnMediaPathCall(t *testing.T) {
	m := &sfu.Metrics{}
	var timed [2]atomic.Uint64 // packets timed in the server, by kind
	var late atomic.Uint64     // timed as under 0 or over 10 s
	m.OnForwardDelay = func(k sfu.Kind, d time.Duration) {
		if k == sfu.KindVideo {
			timed[1].Add(1)
		} else {
			timed[0].Add(1)
		}
		if d < 0 || d > 10*time.Second {
			late.Add(1)
		}
	}
	env := signaltest.Start(t, sfu.Config{UDPPort: signaltest.FreeUDPPort(t), OwnReceivePath: true, OwnSendPath: true, Metrics: m})
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
	// Each packet the path took and forwarded is timed, from the kernel's
	// receive time, by kind (known where the ingress reads with recvmmsg:
	// ingress_linux.go).
	batched := runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64")
	if a, v := timed[0].Load(), timed[1].Load(); batched && (a+v < own*9/10 || a == 0 || v == 0) || late.Load() != 0 {
		t.Errorf("timed %d audio and %d video packets in the server (%d out of range) of %d taken; want nearly all, of both kinds", a, v, late.Load(), own)
	}
	sentOwn := func() (own, out uint64) { return m.OwnPathSent.Load(), m.PacketsOut[0].Load() + m.PacketsOut[1].Load() }
	sent, out := sentOwn()
	t.Logf("own path sent %d; %d RTP packets forwarded", sent, out)
	if sent < out*9/10 {
		t.Errorf("the own send path sent %d packets, %d were forwarded; want nearly all", sent, out)
	}
	// The clinician's keyframe request reaches the patient through the
	// server, once (its RTCP through pion: the RTCP path is off by default).
	askKeyframe(ctx, t, m, doc, pat)
	// An ICE restart keeps the DTLS session, and so the keys: the path goes
	// on taking the media, and sending it, to the new pair.
	for _, c := range []*client.Client{pat, doc} {
		if err := c.RestartICE(ctx); err != nil {
			t.Fatal(err)
		}
	}
	own, in = m.OwnPathPackets.Load(), m.PacketsIn[0].Load()+m.PacketsIn[1].Load()
	sent, out = sentOwn()
	heard := doc.Received("p-1", "audio")
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= heard.Packets+100 }); err != nil {
		t.Fatalf("no audio after an ICE restart: %v", err)
	}
	own, in = m.OwnPathPackets.Load()-own, m.PacketsIn[0].Load()+m.PacketsIn[1].Load()-in
	t.Logf("after an ICE restart the own path took %d of %d RTP packets", own, in)
	if own < in*9/10 {
		t.Errorf("after an ICE restart the own receive path took %d of %d RTP packets; want nearly all", own, in)
	}
	s2, o2 := sentOwn()
	if s2-sent < (o2-out)*9/10 {
		t.Errorf("after an ICE restart the own send path sent %d packets, %d were forwarded; want nearly all", s2-sent, o2-out)
	}
	// The clinician drops nothing: once the restart is over, the patient
	// gets all of it (but for a packet or two a loaded machine's loopback
	// may drop).
	back := pat.Received("d-1", "audio")
	a, err := pat.WaitReceived(ctx, "d-1", "audio", func(s client.TrackStats) bool { return s.Packets >= back.Packets+100 })
	if err != nil {
		t.Fatal(err)
	}
	if lost := int64(a.Expected-back.Expected) - int64(a.Packets-back.Packets); lost > 2 || a.Packets < back.Packets+50 {
		t.Errorf("the patient got %d of the clinician's %d audio packets since the restart", a.Packets-back.Packets, a.Expected-back.Expected)
	}
	askKeyframe(ctx, t, m, doc, pat)
	if n := m.OwnPathRTCP.Load(); n != 0 {
		t.Errorf("the RTCP path is off, yet it read %d datagrams", n)
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

// askKeyframe has sub ask for a keyframe of pub's video: the server counts
// one PLI from a subscriber, and pub gets a keyframe request.
func askKeyframe(ctx context.Context, t *testing.T, m *sfu.Metrics, sub, pub *client.Client) {
	t.Helper()
	plis, asked := m.PLIReceived.Load(), pub.FeedbackReceived().KeyframeRequests
	if err := sub.RequestKeyframe("p-1", "video"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.PLIReceived.Load() == plis || pub.FeedbackReceived().KeyframeRequests == asked {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("PLIs from subscribers %d (were %d), keyframe requests at the publisher %d (were %d): the request did not get through",
				m.PLIReceived.Load(), plis, pub.FeedbackReceived().KeyframeRequests, asked)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := m.PLIReceived.Load() - plis; n != 1 {
		t.Errorf("one PLI sent, the server counted %d", n)
	}
}

// TestOwnRTCPCall: with the RTCP path on (Config.OwnRTCPPath), a clinician
// whose downlink loses 10 % of the media, audio and (after the upgrade)
// video. Its RTCP comes in on the own path (ownrtcp.go): its NACKs are
// answered, its keyframe request reaches the patient once, and the loss its receiver reports give for the patient's audio reaches the
// patient in the server's receiver reports (lossreport.go), which is what
// a browser's Opus encoder spends FEC by.
func TestOwnRTCPCall(t *testing.T) {
	m := &sfu.Metrics{}
	env := signaltest.Start(t, sfu.Config{UDPPort: signaltest.FreeUDPPort(t), OwnReceivePath: true, OwnSendPath: true, OwnRTCPPath: true, Metrics: m})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(tok string, opts client.Options) *client.Client {
		opts.URL, opts.Token, opts.TransportCC = env.URL, tok, true
		opts.AudioFile, opts.VideoFile, opts.Prenegotiate = "../testdata/audio.ogg", "../testdata/video.ivf", true
		c, err := client.Dial(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pat := dial(env.Mint(signaltest.Claims("p-1", token.RolePatient, "c-1", "p-1", false)), client.Options{})
	doc := dial(env.Mint(signaltest.Claims("d-1", token.RoleClinician, "c-1", "p-1", false)), client.Options{ReceiveDropRate: 0.1})
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
		t.Fatalf("no audio: %v", err)
	}
	if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil { // video: what NACKs are for
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.OwnPathRTCP.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the own path read none of the subscribers' RTCP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	nacks, resent := m.NACKReceived.Load(), m.Retransmissions.Load()
	for {
		fb := pat.FeedbackReceived()
		if m.NACKReceived.Load() > nacks && m.Retransmissions.Load() > resent && fb.MaxFractionLost > 0 {
			t.Logf("since the own path took the RTCP: %d NACKs, %d packets resent; the patient's highest fraction lost %d/256; %d RTCP datagrams read on the path",
				m.NACKReceived.Load()-nacks, m.Retransmissions.Load()-resent, fb.MaxFractionLost, m.OwnPathRTCP.Load())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("since the own path took the RTCP: NACKs %d, resent %d; the patient's highest fraction lost %d; want NACKs answered and the clinician's loss reported to the patient",
				m.NACKReceived.Load()-nacks, m.Retransmissions.Load()-resent, fb.MaxFractionLost)
		}
		time.Sleep(50 * time.Millisecond)
	}
	read := m.OwnPathRTCP.Load()
	askKeyframe(ctx, t, m, doc, pat)
	if m.OwnPathRTCP.Load() == read {
		t.Errorf("the keyframe request did not come in on the own path")
	}
}
