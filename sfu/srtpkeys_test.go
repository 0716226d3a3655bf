package sfu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// teeConn is the server's UDP socket, keeping a copy of every SRTP
// datagram it reads (in) and writes (out), as a media path of medcall's own
// would see them.
type teeConn struct {
	*net.UDPConn
	mu      sync.Mutex
	in, out [][]byte
	peer    net.Addr // where SRTP came from
}

func isSRTP(b []byte) bool {
	return len(b) > 12 && b[0]>>6 == 2 && (b[1]&0x7f < 64 || b[1]&0x7f > 95) // RFC 5761: not RTCP
}

func (c *teeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.UDPConn.ReadFrom(b)
	if err == nil && isSRTP(b[:n]) {
		c.mu.Lock()
		c.in, c.peer = append(c.in, bytes.Clone(b[:n])), from
		c.mu.Unlock()
	}
	return n, from, err
}

func (c *teeConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if isSRTP(b) {
		c.mu.Lock()
		c.out = append(c.out, bytes.Clone(b))
		c.mu.Unlock()
	}
	return c.UDPConn.WriteTo(b, to)
}

func (c *teeConn) taken() (in, out [][]byte, peer net.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in, c.out, c.peer
}

// keyPair is a medcall-side connection with a key capture on a teed
// socket, and a plain pion peer that may prefer a profile and suite.
type keyPair struct {
	server, client *webrtc.PeerConnection
	capture        *srtpKeyCapture
	tee            *teeConn
}

func newKeyPair(t testing.TB, profile dtls.SRTPProtectionProfile, suite dtls.CipherSuiteID, clientCfg webrtc.Configuration) *keyPair {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &keyPair{capture: newSRTPKeyCapture(), tee: &teeConn{UDPConn: conn}}
	mux := webrtc.NewICEUDPMux(nil, p.tee)
	t.Cleanup(func() { _ = mux.Close() })
	api := func(server bool) *webrtc.API {
		se := webrtc.SettingEngine{}
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		if server {
			se.SetICEUDPMux(mux)
			if err := p.capture.apply(&se); err != nil {
				t.Fatal(err)
			}
		} else {
			if profile != 0 {
				se.SetSRTPProtectionProfiles(profile)
			}
			if suite != 0 {
				se.SetDTLSCipherSuites(suite)
			}
		}
		m := &webrtc.MediaEngine{}
		if err := RegisterCodecs(m); err != nil {
			t.Fatal(err)
		}
		return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
	}
	if p.server, err = api(true).NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	if p.client, err = api(false).NewPeerConnection(clientCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.client.Close(); _ = p.server.Close() })
	return p
}

// negotiate has offerer offer and answerer answer, with every candidate
// in the descriptions.
func negotiate(t testing.TB, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	describe := func(pc *webrtc.PeerConnection, create func(*webrtc.OfferOptions) (webrtc.SessionDescription, error)) webrtc.SessionDescription {
		d, err := create(nil)
		if err != nil {
			t.Fatal(err)
		}
		done := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(d); err != nil {
			t.Fatal(err)
		}
		<-done
		return *pc.LocalDescription()
	}
	offer := describe(offerer, offerer.CreateOffer)
	if err := answerer.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer := describe(answerer, func(*webrtc.OfferOptions) (webrtc.SessionDescription, error) { return answerer.CreateAnswer(nil) })
	if err := offerer.SetRemoteDescription(answer); err != nil {
		t.Fatal(err)
	}
}

func opusTrack(t testing.TB, id string) *webrtc.TrackLocalStaticRTP {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, id, id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func marked(seq uint16) []byte { return fmt.Appendf(nil, "medcall srtp %05d", seq) }

// connectionKeys are the capture's keys with the cryptex modes of the
// server's descriptions.
func connectionKeys(t testing.TB, p *keyPair, ctx context.Context) SRTPKeys {
	t.Helper()
	keys, err := p.capture.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys.LocalCryptex, keys.RemoteCryptex, err = cryptexModes(p.server.LocalDescription(), p.server.RemoteDescription()); err != nil {
		t.Fatal(err)
	}
	return keys
}

// withExtension is a packet with a header extension, as real media has
// (transport-cc, audio level): cryptex encrypts it.
func withExtension(t testing.TB, seq uint16, payload []byte) *rtp.Packet {
	t.Helper()
	p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: payload}
	if err := p.Header.SetExtension(5, []byte{0xca, 0xfe}); err != nil {
		t.Fatal(err)
	}
	return p
}

// decryptAll opens every datagram with ctx and returns the payloads.
func decryptAll(t *testing.T, ctx *srtp.Context, dgrams [][]byte) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for _, d := range dgrams {
		plain, err := ctx.DecryptRTP(nil, d, nil)
		if err != nil {
			t.Fatalf("a datagram pion sent did not open with the derived key: %v", err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		got[string(p.Payload)] = true
	}
	return got
}

// TestSRTPKeysOpenWhatPionSends: the keys put together from the key log
// and the ServerHello open the SRTP pion itself sent and received on the
// wire, header extensions and all, in both directions: for each of the
// three profiles medcall offers (pion's defaults), both PRF hashes, with
// cryptex negotiated (pion's default between pion peers) and without; and a
// packet medcall encrypts itself with them, on a track pion declared but
// never wrote, is played by the peer.
func TestSRTPKeysOpenWhatPionSends(t *testing.T) {
	noCryptex := webrtc.Configuration{RTPHeaderEncryptionPolicy: webrtc.RTPHeaderEncryptionPolicyDisable}
	cases := []struct {
		name    string
		profile dtls.SRTPProtectionProfile
		suite   dtls.CipherSuiteID
		cfg     webrtc.Configuration
		cryptex bool
	}{
		{"aes256gcm", dtls.SRTP_AEAD_AES_256_GCM, 0, webrtc.Configuration{}, true},
		{"aes128gcm", dtls.SRTP_AEAD_AES_128_GCM, 0, webrtc.Configuration{}, true},
		{"aes128cm-sha1-80", dtls.SRTP_AES128_CM_HMAC_SHA1_80, 0, webrtc.Configuration{}, true},
		{"aes256gcm-sha384-prf", dtls.SRTP_AEAD_AES_256_GCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, webrtc.Configuration{}, true},
		{"aes128gcm-no-cryptex", dtls.SRTP_AEAD_AES_128_GCM, 0, noCryptex, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { srtpKeysRound(t, tc.profile, tc.suite, tc.cfg, tc.cryptex) })
	}
}

func srtpKeysRound(t *testing.T, profile dtls.SRTPProtectionProfile, suite dtls.CipherSuiteID, cfg webrtc.Configuration, cryptex bool) {
	p := newKeyPair(t, profile, suite, cfg)
	up := opusTrack(t, "up")
	if _, err := p.client.AddTrack(up); err != nil {
		t.Fatal(err)
	}
	down, own := opusTrack(t, "down"), opusTrack(t, "own")
	var ownSSRC webrtc.SSRC
	for _, tr := range []*webrtc.TrackLocalStaticRTP{down, own} {
		s, err := p.server.AddTrack(tr)
		if err != nil {
			t.Fatal(err)
		}
		ownSSRC = s.GetParameters().Encodings[0].SSRC
	}
	played := make(chan []byte, 64)
	p.client.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if tr.SSRC() == ownSSRC {
				played <- pkt.Payload
			}
		}
	})
	for range 2 { // room in the offer for the server's two tracks
		if _, err := p.client.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	connected := make(chan struct{}, 2)
	for _, pc := range []*webrtc.PeerConnection{p.client, p.server} {
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected {
				connected <- struct{}{}
			}
		})
	}
	negotiate(t, p.client, p.server)
	for range 2 {
		select {
		case <-connected:
		case <-time.After(20 * time.Second):
			t.Fatal("not connected")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := connectionKeys(t, p, ctx)
	if keys.Profile != srtp.ProtectionProfile(profile) {
		t.Fatalf("profile %v, want %v", keys.Profile, profile)
	}
	if keys.LocalCryptex != cryptex || keys.RemoteCryptex != cryptex {
		t.Fatalf("cryptex send %v receive %v, want %v", keys.LocalCryptex, keys.RemoteCryptex, cryptex)
	}
	const n = 20
	for seq := uint16(1); seq <= n; seq++ {
		for _, tr := range []*webrtc.TrackLocalStaticRTP{up, down} {
			if err := tr.WriteRTP(withExtension(t, seq, marked(seq))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	var in, out [][]byte
	var peer net.Addr
	for deadline := time.Now().Add(10 * time.Second); len(in) < n || len(out) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the socket saw %d SRTP datagrams in and %d out, want %d each", len(in), len(out), n)
		}
		in, out, peer = p.tee.taken()
	}
	local, remote, err := keys.Contexts()
	if err != nil {
		t.Fatal(err)
	}
	if cryptex { // the keys alone, without the SDP's cryptex modes, do not open it
		k := keys
		k.RemoteCryptex = false
		_, plainRemote, err := k.Contexts()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plainRemote.DecryptRTP(nil, in[0], nil); err == nil {
			t.Fatal("a cryptex packet opened without cryptex: the test's packets carry no header extension")
		}
	}
	for dir, got := range map[string]map[string]bool{"received": decryptAll(t, remote, in), "sent": decryptAll(t, local, out)} {
		for seq := uint16(1); seq <= n; seq++ {
			if !got[string(marked(seq))] {
				t.Fatalf("packet %d pion %s was not among those the derived keys opened", seq, dir)
			}
		}
	}

	// medcall's own send: pion never writes on ownSSRC, so its SRTP
	// index is medcall's alone.
	for seq := uint16(1); seq <= 3; seq++ {
		h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: uint32(ownSSRC)}
		plain, err := (&rtp.Packet{Header: h, Payload: marked(1000 + seq)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := local.EncryptRTP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.tee.UDPConn.WriteTo(sealed, peer); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-played:
		if !bytes.HasPrefix(got, []byte("medcall srtp 0100")) { // 1001-1003
			t.Fatalf("the peer played %q, want one of the packets medcall encrypted", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer played nothing medcall encrypted itself")
	}
}

// TestSRTPKeysRefuseTheClientRole: when the peer makes medcall the DTLS
// client, the capture says at once that it cannot have the keys.
func TestSRTPKeysRefuseTheClientRole(t *testing.T) {
	p := newKeyPair(t, 0, 0, webrtc.Configuration{})
	if _, err := p.server.AddTrack(opusTrack(t, "down")); err != nil {
		t.Fatal(err)
	}
	// The plain peer answers as the DTLS server.
	se := webrtc.SettingEngine{}
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		t.Fatal(err)
	}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	m := &webrtc.MediaEngine{}
	if err := RegisterCodecs(m); err != nil {
		t.Fatal(err)
	}
	client, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	connected := make(chan struct{}, 1)
	p.server.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			connected <- struct{}{}
		}
	})
	negotiate(t, p.server, client)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := p.capture.Keys(ctx); !errors.Is(err, errSRTPKeysClientRole) {
		t.Fatalf("Keys: %v, want %v", err, errSRTPKeysClientRole)
	}
	select { // and the connection is unharmed by the capture
	case <-connected:
	case <-ctx.Done():
		t.Fatal("the connection did not complete its handshake")
	}
}
