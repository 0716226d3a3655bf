package sfu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// srtpkeys.go: a peer connection's SRTP keys, for a media path of medcall's
// own beside pion's ICE and DTLS (docs/performance.md). pion v4 exposes
// neither its DTLS connection nor its keying material, so they are put
// together from what its SettingEngine does expose, per connection:
//
//   - the DTLS key log (SetDTLSKeyLogWriter): the client random and the
//     master secret, written once the handshake has them;
//   - the ServerHello medcall sends (SetDTLSServerHelloMessageHook): the
//     server random, the cipher suite (whose hash the exporter uses) and the
//     SRTP protection profile chosen.
//
// The keys are then RFC 5764's exporter, exactly as pion derives them:
// PRF(master secret, "EXTRACTOR-dtls_srtp", client random + server random),
// cut into client key, server key, client salt, server salt.
//
// Only the DTLS server sends a ServerHello, so a capture makes medcall the
// DTLS server when it answers (SetAnsweringDTLSRole); when it offers, the
// answerer picks, and a browser or pion answers as the client. Should
// medcall be the client anyway, the capture says so (errSRTPKeysClientRole)
// instead of waiting.
//
// Tried and not possible: a custom DTLS cipher suite whose Init would see
// the master secret and both randoms. pion/dtls looks a negotiated suite's
// ID up among its own implementations before the custom ones, so a custom
// suite is only ever used under an ID pion does not implement.
//
// medcall neither stores nor logs the master secret: the copy decoded from
// the key log is cleared once the keys are derived (pion itself keeps its
// own for the life of the connection). The keys are ready when the key log
// is written, before the peer's Finished is checked: use them only once
// the connection is connected. A handshake that fails after the
// ServerHello never delivers keys; Keys then returns when its context ends.
//
// Cryptex (RFC 9335, encrypted RTP header extensions) is negotiated in the
// SDP, not in DTLS, and pion negotiates it by default with peers that offer
// it (pion's own, medcall's Go client); browsers do not today. Whoever
// makes the SRTP contexts must set SRTPKeys' cryptex fields from the
// connection's descriptions (cryptexModes).

// SRTPKeys are one connection's SRTP master keys and salts: Local protects
// what medcall sends, Remote what it receives.
type SRTPKeys struct {
	Profile               srtp.ProtectionProfile
	LocalKey, LocalSalt   []byte
	RemoteKey, RemoteSalt []byte
	// LocalCryptex: what medcall sends has its header extensions
	// encrypted; RemoteCryptex: what it receives may have (cryptexModes).
	LocalCryptex, RemoteCryptex bool
}

// srtpReplayWindow is the replay protection of what medcall receives, in
// packets (a bare srtp.Context has none), on the own path and, through the
// SettingEngine, in pion's sessions. pion's default is 64, but at N=150 a
// packet resent for a NACK after a kernel drop arrives hundreds of packets
// late, and a 64-packet window refuses it as a replay; 1,024 packets is
// 7 s of video at 150 packets/s.
const srtpReplayWindow = 1024

// receiver is Contexts without the replay window on the receiving side,
// for a caller that keeps its own (ownOpener, whose window also covers
// the packets pion decrypted).
func (k SRTPKeys) receiver() (local, remote *srtp.Context, err error) {
	return k.contexts(false)
}

// Contexts returns SRTP contexts for sending (local) and receiving (remote,
// with replay protection).
func (k SRTPKeys) Contexts() (local, remote *srtp.Context, err error) {
	return k.contexts(true)
}

// sender is the context for sending alone (ownSender).
func (k SRTPKeys) sender() (*srtp.Context, error) {
	var opts []srtp.ContextOption
	if k.LocalCryptex {
		opts = append(opts, srtp.Cryptex(srtp.CryptexModeEnabled))
	}
	return srtp.CreateContext(k.LocalKey, k.LocalSalt, k.Profile, opts...)
}

func (k SRTPKeys) contexts(replayWindow bool) (local, remote *srtp.Context, err error) {
	opts := func(cryptex bool, more ...srtp.ContextOption) []srtp.ContextOption {
		if cryptex {
			more = append(more, srtp.Cryptex(srtp.CryptexModeEnabled))
		}
		return more
	}
	if local, err = srtp.CreateContext(k.LocalKey, k.LocalSalt, k.Profile, opts(k.LocalCryptex)...); err != nil {
		return nil, nil, err
	}
	var replay []srtp.ContextOption
	if replayWindow {
		replay = []srtp.ContextOption{srtp.SRTPReplayProtection(srtpReplayWindow), srtp.SRTCPReplayProtection(srtpReplayWindow)}
	}
	if remote, err = srtp.CreateContext(k.RemoteKey, k.RemoteSalt, k.Profile, opts(k.RemoteCryptex, replay...)...); err != nil {
		return nil, nil, err
	}
	return local, remote, nil
}

var errSRTPKeysClientRole = errors.New("sfu: SRTP keys: medcall is this connection's DTLS client, and only the server's keys can be put together")

// srtpKeyCapture collects one peer connection's SRTP keys during its DTLS
// handshake. Apply it to the SettingEngine of that connection's API only.
type srtpKeyCapture struct {
	mu      sync.Mutex
	applied bool
	hello   bool
	random  [handshake.RandomLength]byte
	suite   dtls.CipherSuiteID
	profile srtp.ProtectionProfile
	keys    SRTPKeys
	err     error
	done    chan struct{} // closed once keys or err is set
}

func newSRTPKeyCapture() *srtpKeyCapture {
	return &srtpKeyCapture{done: make(chan struct{})}
}

// apply makes se's connections report their handshake to c. A capture
// serves one connection: two sharing it would mix one's master secret with
// the other's server random, so a second apply is refused.
func (c *srtpKeyCapture) apply(se *webrtc.SettingEngine) error {
	c.mu.Lock()
	applied := c.applied
	c.applied = true
	c.mu.Unlock()
	if applied {
		return errors.New("sfu: SRTP keys: a capture serves one connection's setting engine only")
	}
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		return err
	}
	se.SetDTLSServerHelloMessageHook(c.serverHello)
	se.SetDTLSClientHelloMessageHook(c.clientHello)
	se.SetDTLSKeyLogWriter(c)
	return nil
}

// Keys waits for the handshake's keys.
func (c *srtpKeyCapture) Keys(ctx context.Context) (SRTPKeys, error) {
	select {
	case <-c.done:
		return c.keys, c.err
	case <-ctx.Done():
		return SRTPKeys{}, ctx.Err()
	}
}

func (c *srtpKeyCapture) clientHello(m handshake.MessageClientHello) handshake.Message {
	c.finish(SRTPKeys{}, errSRTPKeysClientRole)
	return &m
}

func (c *srtpKeyCapture) serverHello(m handshake.MessageServerHello) handshake.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.random = m.Random.MarshalFixed()
	if m.CipherSuiteID != nil {
		c.suite = dtls.CipherSuiteID(*m.CipherSuiteID)
	}
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			c.profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	c.hello = true
	return &m
}

// Write takes pion's key log line: "CLIENT_RANDOM <hex> <hex>\n".
func (c *srtpKeyCapture) Write(p []byte) (int, error) {
	f := bytes.Fields(p)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return len(p), nil // not a line the exporter needs
	}
	clientRandom, err1 := hex.DecodeString(string(f[1]))
	master, err2 := hex.DecodeString(string(f[2]))
	defer clear(master)
	if err := errors.Join(err1, err2); err != nil {
		c.finish(SRTPKeys{}, fmt.Errorf("sfu: SRTP keys: key log line: %w", err))
		return len(p), nil
	}
	c.mu.Lock()
	hello, serverRandom, suite, profile := c.hello, c.random, c.suite, c.profile
	c.mu.Unlock()
	if !hello {
		c.finish(SRTPKeys{}, errors.New("sfu: SRTP keys: key log before the ServerHello"))
		return len(p), nil
	}
	keys, err := exportSRTPKeys(master, clientRandom, serverRandom[:], suite, profile)
	c.finish(keys, err)
	return len(p), nil
}

func (c *srtpKeyCapture) finish(keys SRTPKeys, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return // the first verdict stands
	default:
	}
	c.keys, c.err = keys, err
	close(c.done)
}

// exportSRTPKeys is RFC 5764 section 4.2's key derivation for the DTLS
// server.
func exportSRTPKeys(master, clientRandom, serverRandom []byte, suite dtls.CipherSuiteID, profile srtp.ProtectionProfile) (SRTPKeys, error) {
	switch profile { // the profiles pion's WebRTC runs (webrtc's srtpProtectionProfileFromDTLS)
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm,
		srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.ProtectionProfileNullHmacSha1_80:
	default:
		return SRTPKeys{}, fmt.Errorf("sfu: SRTP keys: profile %v is not one pion runs", profile)
	}
	keyLen, err1 := profile.KeyLen()
	saltLen, err2 := profile.SaltLen()
	if err := errors.Join(err1, err2); err != nil {
		return SRTPKeys{}, fmt.Errorf("sfu: SRTP keys: profile %v: %w", profile, err)
	}
	seed := append([]byte("EXTRACTOR-dtls_srtp"), clientRandom...)
	seed = append(seed, serverRandom...)
	m, err := prf.PHash(master, seed, 2*(keyLen+saltLen), prfHash(suite))
	if err != nil {
		return SRTPKeys{}, fmt.Errorf("sfu: SRTP keys: %w", err)
	}
	clientKey, m := m[:keyLen], m[keyLen:]
	serverKey, m := m[:keyLen], m[keyLen:]
	clientSalt, serverSalt := m[:saltLen], m[saltLen:]
	return SRTPKeys{Profile: profile, LocalKey: serverKey, LocalSalt: serverSalt, RemoteKey: clientKey, RemoteSalt: clientSalt}, nil
}

// prfHash is the TLS 1.2 PRF's hash for a cipher suite: SHA-384 for the
// *_SHA384 suites, SHA-256 for every other suite pion implements.
func prfHash(suite dtls.CipherSuiteID) func() hash.Hash {
	switch suite {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384
	}
	return sha256.New
}

// cryptexModes is pion's RFC 9335 rule for a connection whose
// RTPHeaderEncryptionPolicy is the default (negotiate): a description
// declares that its sender accepts encrypted header extensions with
// a=cryptex at session level, or on every RTP media section (itself or
// through its BUNDLE group's first section). Medcall encrypts what it sends
// when the remote description declares it, and accepts it when the local
// one does.
func cryptexModes(local, remote *webrtc.SessionDescription) (send, receive bool, err error) {
	declares := func(d *webrtc.SessionDescription) (bool, error) {
		if d == nil {
			return false, nil
		}
		// Parsed afresh: SessionDescription.Unmarshal caches into a struct
		// pion shares with its own goroutines.
		parsed := &sdp.SessionDescription{}
		if err := parsed.UnmarshalString(d.SDP); err != nil {
			return false, err
		}
		if _, ok := parsed.Attribute(sdp.AttrKeyCryptex); ok {
			return true, nil
		}
		var tag *sdp.MediaDescription
		var bundled []string
		if g, ok := parsed.Attribute(sdp.AttrKeyGroup); ok && strings.HasPrefix(g, "BUNDLE ") {
			bundled = strings.Fields(g)[1:]
		}
		for _, m := range parsed.MediaDescriptions {
			if mid, _ := m.Attribute(sdp.AttrKeyMID); len(bundled) > 0 && mid == bundled[0] {
				tag = m
			}
		}
		rtp := 0
		for _, m := range parsed.MediaDescriptions {
			_, bundleOnly := m.Attribute("bundle-only")
			if (m.MediaName.Port.Value == 0 && !bundleOnly) || m.MediaName.Media == "application" {
				continue
			}
			rtp++
			_, has := m.Attribute(sdp.AttrKeyCryptex)
			mid, _ := m.Attribute(sdp.AttrKeyMID)
			if !has && tag != nil && slices.Contains(bundled, mid) {
				_, has = tag.Attribute(sdp.AttrKeyCryptex)
			}
			if !has {
				return false, nil
			}
		}
		return rtp > 0, nil
	}
	if send, err = declares(remote); err != nil {
		return false, false, err
	}
	if receive, err = declares(local); err != nil {
		return false, false, err
	}
	return send, receive, nil
}
