package main

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu/turn/coturntest"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
	"github.com/pion/stun/v4"
	pturn "github.com/pion/turn/v5"
)

func freeUDPPort(t *testing.T) int { return signaltest.FreeUDPPort(t) }

// turnURL is the first iceServers URL of a transport ("udp", "tcp").
func turnURL(t *testing.T, j signaling.Message, transport string) string {
	t.Helper()
	for _, s := range j.ICEServers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "transport="+transport) {
				return u
			}
		}
	}
	t.Fatalf("joined.iceServers has no turn: URL over %s: %+v", transport, j.ICEServers)
	return ""
}

// TestRelayOnlyCallThroughBuiltinTURN: a recorded call where both clients
// may use nothing but the built-in relay (the patient over TURN/TCP, the
// clinician over TURN/UDP): audio both ways, an upgrade by each path, junk
// thrown at the relay, the recording complete, and the allocations closed
// once the participants leave.
func TestRelayOnlyCallThroughBuiltinTURN(t *testing.T) {
	data := t.TempDir()
	udpPort := freeUDPPort(t)
	addr, admin, _ := startServe(t, data, "--udp-port", strconv.Itoa(udpPort), "--turn", "--turn-port", "0", "--turn-tls-port", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, dc := relayedCall(t, ctx, addr, data, "tcp", "udp")
	before := scrape(t, admin)
	j := pc.Joined()
	if len(j.ICEServers) != 1 || j.ICEServers[0].Username == "" || j.ICEServers[0].Credential == "" {
		t.Fatalf("joined.iceServers: %+v", j.ICEServers)
	}
	if dc.Joined().ICEServers[0].Username == j.ICEServers[0].Username {
		t.Fatal("two participants got the same TURN credential")
	}
	// 10,000 junk datagrams at the relay (and 2,000 at the SFU's port): the
	// call goes on.
	turnAddr := strings.TrimSuffix(strings.TrimPrefix(turnURL(t, j, "udp"), "turn:"), "?transport=udp")
	sendJunk(t, turnAddr, 10000)
	sendJunk(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(udpPort)), 2000)
	hears(t, ctx, dc, "p-1", dc.Received("p-1", "audio").Packets+50)
	hears(t, ctx, pc, "d-1", pc.Received("d-1", "audio").Packets+50)

	during := scrape(t, admin)
	toSFU, toClient := `medcall_turn_relayed_bytes_total{direction="to_sfu"}`, `medcall_turn_relayed_bytes_total{direction="to_client"}`
	if during[`medcall_turn_allocations_active`] < 4 || during[toSFU] == 0 || during[toClient] == 0 {
		t.Errorf("TURN metrics during a relayed call: active %v, to_sfu %v, to_client %v",
			during[`medcall_turn_allocations_active`], during[toSFU], during[toClient])
	}
	// The relay's address is an ordinary remote address to the SFU: the own
	// media path (on by default) takes the relayed media too, and sends to it.
	ownPathTookNearlyAll(t, before, during)
	_ = pc.Leave(ctx)
	_ = dc.Leave(ctx)
	recordingComplete(t, data)
	deadline := time.Now().Add(5 * time.Second)
	for scrape(t, admin)[`medcall_turn_allocations_active`] != 0 {
		if time.Now().After(deadline) {
			t.Fatal("TURN allocations still open after both participants left")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRelayOnlyCallThroughCoturn: the same call through an operator's coturn
// (use-auth-secret) with credentials minted by --turn-url/--turn-secret.
func TestRelayOnlyCallThroughCoturn(t *testing.T) {
	secret := "coturn-shared-secret-for-the-test"
	ct := coturntest.Start(t, coturntest.Config{ListenIP: "127.0.0.1", Secret: secret, Peers: []string{"127.0.0.1"}})
	hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(ct.Port))
	data := t.TempDir()
	addr, _, _ := startServe(t, data, "--udp-port", strconv.Itoa(freeUDPPort(t)),
		"--turn-url", "turn:"+hp+"?transport=udp,turn:"+hp+"?transport=tcp", "--turn-secret", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, dc := relayedCall(t, ctx, addr, data, "tcp", "udp")
	if s := pc.Joined().ICEServers; len(s) != 1 || s[0].URLs[0] != "turn:"+hp+"?transport=udp" {
		t.Fatalf("joined.iceServers: %+v", s)
	}
	if n := strings.Count(ct.Output(), "ALLOCATE processed, success"); n < 4 {
		t.Errorf("coturn logged %d successful allocations, want at least 4 (two peer connections each)", n)
	}
	_ = pc.Leave(ctx)
	_ = dc.Leave(ctx)
	recordingComplete(t, data)
}

// relayedCall joins a recorded call whose patient and clinician may only use
// TURN (over the given transports), checks audio both ways carries what was
// sent, and upgrades the patient by the pre-negotiated path and the
// clinician by renegotiation.
func relayedCall(t *testing.T, ctx context.Context, addr, data, patTransport, docTransport string) (pc, dc *client.Client) {
	t.Helper()
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	url := "ws://" + addr + "/v1/signal"
	audio, video := "../../testdata/audio.ogg", "../../testdata/video.ivf"
	pc, err := client.Dial(ctx, client.Options{URL: url, Token: pat, AudioFile: audio, VideoFile: video, Prenegotiate: true,
		Fingerprint: true, RelayOnly: true, TURNTransports: []string{patTransport}})
	if err != nil {
		t.Fatalf("patient, relay only over TURN/%s: %v", patTransport, err)
	}
	t.Cleanup(pc.Close)
	dc, err = client.Dial(ctx, client.Options{URL: url, Token: doc, AudioFile: audio, VideoFile: video,
		Fingerprint: true, RelayOnly: true, TURNTransports: []string{docTransport}})
	if err != nil {
		t.Fatalf("clinician, relay only over TURN/%s: %v", docTransport, err)
	}
	t.Cleanup(dc.Close)
	hears(t, ctx, dc, "p-1", 25)
	hears(t, ctx, pc, "d-1", 25)
	for _, c := range []struct {
		who, from *client.Client
		id        string
	}{{dc, pc, "p-1"}, {pc, dc, "d-1"}} {
		// What was received is read before what was sent: the sender keeps
		// sending, and a packet received after a snapshot of the sent ones
		// would look forged.
		received := c.who.ReceivedFingerprints(c.id, "audio")
		_, sent := c.from.Sent("audio")
		for ts := range received {
			if _, ok := sent[ts]; !ok {
				t.Fatalf("audio from %s carries a timestamp it never sent", c.id)
			}
		}
	}
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	if err := dc.Upgrade(ctx, signaling.PathRenegotiate); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who  *client.Client
		from string
	}{{dc, "p-1"}, {pc, "d-1"}} {
		if _, err := c.who.WaitReceived(ctx, c.from, "video", func(s client.TrackStats) bool { return s.Keyframes > 0 && s.Packets > 50 }); err != nil {
			t.Fatalf("no video from %s after its upgrade through the relay: %v", c.from, err)
		}
	}
	return pc, dc
}

// hears waits until who has received n audio packets from participant from.
func hears(t *testing.T, ctx context.Context, who *client.Client, from string, n uint64) {
	t.Helper()
	if _, err := who.WaitReceived(ctx, from, "audio", func(s client.TrackStats) bool { return s.Packets >= n }); err != nil {
		t.Fatalf("no audio from %s through the relay: %v", from, err)
	}
}

// recordingComplete waits for the one recording of the call and checks it
// holds both participants' audio and video and decodes cleanly.
func recordingComplete(t *testing.T, data string) {
	t.Helper()
	webms := waitRecordings(t, data, 1, 20*time.Second)
	if len(webms) != 1 {
		t.Fatalf("%d recordings, want 1", len(webms))
	}
	titles := map[string]string{}
	for _, s := range ffprobe(t, webms[0]).Streams {
		titles[s.Tags.Title] = s.CodecName
	}
	for _, want := range []string{"patient/audio", "clinician/audio", "patient/video", "clinician/video"} {
		if titles[want] == "" {
			t.Errorf("recording lacks %s (tracks %v)", want, titles)
		}
	}
	decodesClean(t, webms[0])
}

// sendJunk throws n malformed STUN/TURN/ChannelData datagrams at addr.
func sendJunk(t *testing.T, addr string, n int) {
	t.Helper()
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		p := make([]byte, 20+i%200)
		for k := range p {
			p[k] = byte(i*31 + k*7)
		}
		switch i % 4 {
		case 0: // STUN Allocate header with a magic cookie and a lying length
			copy(p, []byte{0x00, 0x03, 0x01, 0x90, 0x21, 0x12, 0xa4, 0x42})
		case 1: // STUN Binding request, garbage attributes
			copy(p, []byte{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42})
		case 2: // ChannelData for an unbound channel
			copy(p, []byte{0x40, 0x01, 0x05, 0xdc})
		}
		_, _ = c.Write(p)
		if i%500 == 499 {
			time.Sleep(time.Millisecond) // a flood, not a socket-buffer overrun test
		}
	}
}

// TestBuiltinTURNRefusesThroughServe drives serve's relay with a plain TURN
// client holding the credentials joins hand out: it reaches the SFU's media
// port and nothing else (the admin port, another loopback address, a third
// host), refuses a forged password, a left participant's credential and an
// expired one, and counts every refusal.
func TestBuiltinTURNRefusesThroughServe(t *testing.T) {
	data := t.TempDir()
	udpPort := freeUDPPort(t)
	addr, admin, _ := startServe(t, data, "--udp-port", strconv.Itoa(udpPort), "--turn", "--turn-port", "0", "--turn-tls-port", "0", "--turn-ttl", "6s")
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, false)
	pj, dj := pc.Joined().ICEServers[0], dc.Joined().ICEServers[0]
	server := strings.TrimSuffix(strings.TrimPrefix(turnURL(t, pc.Joined(), "udp"), "turn:"), "?transport=udp")
	// refusals waits (a relayed packet is handled asynchronously) up to 2 s
	// for a refusal to be counted and returns its count.
	refusals := func(reason string) float64 {
		series := `medcall_turn_refusals_total{reason="` + reason + `"}`
		deadline := time.Now().Add(2 * time.Second)
		for {
			n := scrape(t, admin)[series]
			if n >= 1 || time.Now().After(deadline) {
				return n
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	relay, err := turnAllocate(t, server, pj.Username, pj.Credential)
	if err != nil {
		t.Fatalf("allocate with the patient's credential: %v", err)
	}
	// The SFU's media port answers a STUN binding request through the relay.
	media := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort}
	_, adminPort, _ := net.SplitHostPort(admin)
	ap, _ := strconv.Atoi(adminPort)
	adminUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ap})
	if err != nil {
		t.Fatalf("listen UDP on the admin port number: %v", err)
	}
	defer adminUDP.Close()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, tc := range []struct {
		to     *net.UDPAddr
		reason string
	}{
		{adminUDP.LocalAddr().(*net.UDPAddr), "admin_port"},
		{other.LocalAddr().(*net.UDPAddr), "loopback"},
		{&net.UDPAddr{IP: net.IPv4(192, 0, 2, 99), Port: 9}, "other_host"},
	} {
		_, _ = relay.WriteTo([]byte("probe"), tc.to)
		if got := refusals(tc.reason); got < 1 {
			t.Errorf("relay to %v: refusal %s counted %v times", tc.to, tc.reason, got)
		}
	}
	for _, c := range []*net.UDPConn{adminUDP, other} {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := c.ReadFrom(make([]byte, 100)); err == nil {
			t.Errorf("%d bytes were relayed to %v", n, c.LocalAddr())
		}
	}
	if _, err := relay.WriteTo(stunBinding(), media); err != nil {
		t.Errorf("relay to the SFU's media port: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for scrape(t, admin)[`medcall_turn_relayed_bytes_total{direction="to_sfu"}`] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing relayed to the SFU's media port")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if _, err := turnAllocate(t, server, pj.Username, dj.Credential); err == nil {
		t.Error("allocated with another participant's password (a forgery)")
	}
	_ = dc.Leave(ctx)
	if _, err := turnAllocate(t, server, dj.Username, dj.Credential); err == nil {
		t.Error("allocated with the credential of a participant who has left")
	}
	time.Sleep(time.Until(time.Unix(mustExpiry(t, pj.Username), 0)) + 100*time.Millisecond)
	if _, err := turnAllocate(t, server, pj.Username, pj.Credential); err == nil {
		t.Error("allocated with an expired credential")
	}
	for _, r := range []string{"bad_integrity", "revoked", "expired"} {
		if refusals(r) < 1 {
			t.Errorf("refusal %s not counted", r)
		}
	}
}

// turnAllocate makes a UDP allocation on server with a pion TURN client.
func turnAllocate(t *testing.T, server, user, pass string) (net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pturn.NewClient(&pturn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: "medcall"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := cl.Allocate()
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, err
}

func mustExpiry(t *testing.T, username string) int64 {
	t.Helper()
	ts, _, _ := strings.Cut(username, ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatalf("TURN username %q is not expiry:tag", username)
	}
	return n
}

// stunBinding is a STUN Binding request (what ICE checks are made of).
func stunBinding() []byte {
	m := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	return m.Raw
}

// TestCheckProbesBuiltinTURN: `medcall check` against a server with --turn
// relays through it over UDP and TCP (each probe with its own join's
// credential: the first join's is revoked once that probe leaves).
func TestCheckProbesBuiltinTURN(t *testing.T) {
	data := t.TempDir()
	addr, _, _ := startServe(t, data, "--udp-port", strconv.Itoa(freeUDPPort(t)), "--turn", "--turn-port", "0", "--turn-tls-port", "0")
	t.Setenv("MEDCALL_TOKEN", mintCmd(t, "--data", data, "--role", "clinician", "--sub", "check", "--pid", "check", "--cid", "check"))
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := run(ctx, []string{"check", "http://" + addr}, &out, &out); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{`TURN-UDP\s+ok\s+rtt .* \(udp relay/host\)`, `TURN-TCP\s+ok\s+rtt .* \(udp relay/host\)`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}
