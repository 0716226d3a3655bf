package signaling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/token"
	"github.com/pion/webrtc/v4"
)

// TestRefusedOfferLeavesPublishUsable: offers the SFU cannot take (one that
// fails half-way through being applied, garbage, no sdp) are refused, and
// the same publish connection then upgrades to video by renegotiation, which
// the other participant sees.
func TestRefusedOfferLeavesPublishUsable(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 40*time.Second)
	pat, doc := e.audioCall(ctx, "p1", "c1")
	// Parses and names its m-line, so it gets as far as being applied; it has
	// no ICE credentials or fingerprint, so applying it fails.
	halfway := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
	for _, sdp := range []string{halfway, "hello", halfway} {
		_, err := pat.Request(ctx, signaling.Message{Type: signaling.TypeOffer, PC: "publish", SDP: sdp})
		var pe *client.ProtocolError
		if !asProtocolError(err, &pe) || pe.Code != signaling.CodeBadSDP {
			t.Fatalf("bad offer: %v, want %s", err, signaling.CodeBadSDP)
		}
	}
	if err := pat.Upgrade(ctx, signaling.PathRenegotiate); err != nil {
		t.Fatalf("renegotiation after refused offers: %v", err)
	}
	if _, err := doc.WaitReceived(ctx, "p1", "video", hasKeyframe); err != nil {
		t.Fatalf("no video after the renegotiation: %v", err)
	}
	a0 := doc.Received("p1", "audio").Packets
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(a0+25)); err != nil {
		t.Fatalf("audio stopped: %v", err)
	}
}

// TestJoinedListsParticipants: joined always carries participants, an empty
// list for the first joiner, the first for the second.
func TestJoinedListsParticipants(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 20*time.Second)
	joinRaw := func(tok string) []byte {
		r := e.raw(ctx)
		b, _ := json.Marshal(signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: tok})
		if err := r.conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		_, data, err := r.conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first := joinRaw(e.patient("p1", "c1"))
	var got map[string]json.RawMessage
	if err := json.Unmarshal(first, &got); err != nil {
		t.Fatal(err)
	}
	if p, ok := got["participants"]; !ok || !bytes.Equal(p, []byte("[]")) {
		t.Fatalf("first joiner's joined: %s, want \"participants\":[]", first)
	}
	second := joinRaw(e.clinician("d1", "p1", "c1"))
	var m signaling.Message
	if err := json.Unmarshal(second, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Participants) != 1 || m.Participants[0].ID != "p1" || m.Participants[0].Role != token.RolePatient {
		t.Fatalf("second joiner's joined: %s, want the patient listed", second)
	}
}

// TestJoinTokenWithoutRec: rec is a required join claim (PROTOCOL.md:
// missing claims are token_invalid); a token that leaves it out is refused
// rather than read as "do not record".
func TestJoinTokenWithoutRec(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 20*time.Second)
	now := time.Now()
	mint := func(c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = "ed1"
		s, err := tok.SignedString(e.keys.Keys[0].Private)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := jwt.MapClaims{"sub": "d1", "role": "clinician", "cid": "c1", "pid": "p1", "aud": "medcall", "exp": now.Add(time.Hour).Unix()}
	join := func(c jwt.MapClaims) signaling.Message {
		return e.raw(ctx).request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: mint(c)})
	}
	if m := join(base); m.Type != signaling.TypeError || m.Code != signaling.CodeTokenInvalid {
		t.Fatalf("token without rec: %s %q (%s), want %s", m.Type, m.Code, m.Message, signaling.CodeTokenInvalid)
	}
	wrongType := jwt.MapClaims{"rec": "yes"}
	for k, v := range base {
		wrongType[k] = v
	}
	if m := join(wrongType); m.Type != signaling.TypeError || m.Code != signaling.CodeTokenInvalid {
		t.Fatalf("token with rec \"yes\": %s %q, want %s", m.Type, m.Code, signaling.CodeTokenInvalid)
	}
	for _, rec := range []bool{false, true} {
		c := jwt.MapClaims{"rec": rec}
		for k, v := range base {
			c[k] = v
		}
		c["cid"] = map[bool]string{false: "c-off", true: "c-on"}[rec]
		if m := join(c); m.Type != signaling.TypeJoined || *m.Recording != rec {
			t.Fatalf("token with rec %v: %s %q (%s)", rec, m.Type, m.Code, m.Message)
		}
	}
	// Tokens minted by medcall always carry rec, false included.
	if m := e.raw(ctx).request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: e.clinician("d2", "p3", "c3")}); m.Type != signaling.TypeJoined {
		t.Fatalf("minted token with rec false: %s %q (%s)", m.Type, m.Code, m.Message)
	}
}

// TestRefusedAnswerLeavesSubscribeUsable: a broken answer to the server's
// subscribe offer is refused (bad_sdp) and the offer stays open, so the
// client's proper answer is then accepted and the other participant's audio
// arrives.
func TestRefusedAnswerLeavesSubscribeUsable(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	e.dial(ctx, e.patient("p1", "c1"), false)
	r := e.raw(ctx)
	if m := r.request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: e.clinician("d1", "p1", "c1")}); m.Type != signaling.TypeJoined {
		t.Fatalf("join: %s %s", m.Code, m.Message)
	}
	var offer signaling.Message
	var cands []webrtc.ICECandidateInit
	for offer.SDP == "" {
		m := r.next(ctx)
		switch {
		case m.Type == signaling.TypeOffer:
			offer = m
		case m.Type == signaling.TypeCandidate && m.PC == "subscribe":
			cands = append(cands, *m.Candidate)
		}
	}
	broken := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
	if m := r.request(ctx, signaling.Message{Type: signaling.TypeAnswer, ID: "bad", PC: "subscribe", SDP: broken}); m.Code != signaling.CodeBadSDP {
		t.Fatalf("broken answer: %s %q (%s), want %s", m.Type, m.Code, m.Message, signaling.CodeBadSDP)
	}

	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan struct{})
	var once sync.Once
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for n := 0; ; n++ {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if tr.StreamID() == "p1" && n == 10 {
				once.Do(func() { close(got) })
			}
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		t.Fatal(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered // non-trickle: the answer carries its candidates
	if m := r.request(ctx, signaling.Message{Type: signaling.TypeAnswer, ID: "good", PC: "subscribe", SDP: pc.LocalDescription().SDP}); m.Type != signaling.TypeAck {
		t.Fatalf("proper answer after a broken one: %s %q (%s)", m.Type, m.Code, m.Message)
	}
	for _, c := range cands {
		_ = pc.AddICECandidate(c)
	}
	go func() { // later server candidates; r is read only here from now on
		for {
			m, err := r.read(ctx)
			if err != nil {
				return
			}
			if m.Type == signaling.TypeCandidate && m.PC == "subscribe" {
				_ = pc.AddICECandidate(*m.Candidate)
			}
		}
	}()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("no audio from p1 on the subscribe connection")
	}
}

// TestICEServersOnlyAfterJoinAndReleasedOnLeave: joined carries the
// participant's iceServers; a refused join mints nothing; leaving or a
// dropped socket releases the credential exactly once.
func TestICEServersOnlyAfterJoinAndReleasedOnLeave(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	var minted, released atomic.Int32
	srv := &signaling.Server{SFU: e.sfu, Verifier: e.sig.Verifier, Logger: e.sig.Logger,
		ICEServers: func() ([]signaling.ICEServer, func()) {
			n := minted.Add(1)
			return []signaling.ICEServer{{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u" + string('0'+rune(n)), Credential: "c"}},
				func() { released.Add(1) }
		}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer func() { _ = srv.Shutdown(context.Background()) }()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	ctx := ctxT(t, 30*time.Second)

	expired := claims("p1", token.RolePatient, "c1", "p1", false)
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	if _, err := client.Dial(ctx, client.Options{URL: url, Token: e.mint(expired)}); err == nil {
		t.Fatal("expired token joined")
	}
	if _, err := client.Dial(ctx, client.Options{URL: url, Token: "forged.token.here"}); err == nil {
		t.Fatal("forged token joined")
	}
	if n := minted.Load(); n != 0 {
		t.Fatalf("%d credentials minted for refused joins", n)
	}
	pat, err := client.Dial(ctx, client.Options{URL: url, Token: e.patient("p1", "c1"), AudioFile: audioFile})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := client.Dial(ctx, client.Options{URL: url, Token: e.clinician("d1", "p1", "c1"), AudioFile: audioFile})
	if err != nil {
		t.Fatal(err)
	}
	if s := pat.Joined().ICEServers; len(s) != 1 || s[0].Username != "u1" || s[0].URLs[0] != "turn:127.0.0.1:3478?transport=udp" {
		t.Fatalf("patient's joined.iceServers = %+v", s)
	}
	if s := doc.Joined().ICEServers; len(s) != 1 || s[0].Username != "u2" {
		t.Fatalf("clinician's joined.iceServers = %+v", s)
	}
	if err := pat.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	doc.Close() // a dropped socket
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pat.Close()
	time.Sleep(100 * time.Millisecond)
	if n := released.Load(); n != 2 {
		t.Fatalf("%d credentials released after a leave and a drop, want 2", n)
	}
}

// TestServerFullRefusesOnlyNewConsultations: a server with room for one
// consultation (--max-consultations 1) refuses a join that would start a
// second with server_full, binding nothing and leaving the socket usable,
// while the running consultation takes a third participant and a rejoin
// and its audio keeps flowing; once it ends, a new consultation starts.
func TestServerFullRefusesOnlyNewConsultations(t *testing.T) {
	e := newEnv(t, sfu.Config{MaxConsultations: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pat, doc := e.audioCall(ctx, "p1", "c1")

	r := e.raw(ctx)
	m := r.request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: e.patient("p2", "c2")})
	if m.Type != signaling.TypeError || m.Code != signaling.CodeServerFull || m.ID != "j" {
		t.Fatalf("join starting a second consultation: %s %q (%s), want error %s", m.Type, m.Code, m.Message, signaling.CodeServerFull)
	}
	if m := r.request(ctx, signaling.Message{Type: signaling.TypePing, ID: "p"}); m.Type != signaling.TypePong {
		t.Errorf("ping after server_full: %s %s, want pong: the socket stays usable", m.Type, m.Code)
	}

	guest := e.dial(ctx, e.mint(claims("g1", token.RoleGuest, "c1", "p1", false)), false)
	defer guest.Close()
	doc2 := e.dial(ctx, e.clinician("d1", "p1", "c1"), false) // d1 again: replaces doc
	defer doc2.Close()
	before, err := doc2.WaitReceived(ctx, "p1", "audio", atLeast(1))
	if err != nil {
		t.Fatalf("the rejoined clinician hears nothing of the patient: %v", err)
	}
	if _, err := doc2.WaitReceived(ctx, "p1", "audio", atLeast(before.Packets+50)); err != nil {
		t.Fatalf("the patient's audio stopped flowing after the refusals: %v", err)
	}

	for _, c := range []*client.Client{pat, doc, guest, doc2} {
		_ = c.Leave(ctx)
	}
	for len(e.SFU.Hosted()) > 0 {
		if ctx.Err() != nil {
			t.Fatalf("c1 still hosted after every participant left: %v", e.SFU.Hosted())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// c2 for another patient: the refused join bound nothing (a binding of
	// c2 to p2 would refuse this as binding_mismatch).
	p3 := e.dial(ctx, e.patient("p3", "c2"), false)
	defer p3.Close()
}
