package signaling_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/token"
)

// raw is a bare WebSocket for sending what no well-behaved client would.
type raw struct {
	t    testing.TB
	conn *websocket.Conn
}

func (e *env) raw(ctx context.Context) *raw {
	e.t.Helper()
	conn, _, err := websocket.Dial(ctx, e.url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	e.t.Cleanup(func() { _ = conn.CloseNow() })
	return &raw{t: e.t, conn: conn}
}

// send writes b and returns the first reply carrying id (or any error when id is "").
func (r *raw) send(ctx context.Context, b []byte, id string) signaling.Message {
	r.t.Helper()
	if err := r.conn.Write(ctx, websocket.MessageText, b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
	for {
		m, err := r.read(ctx)
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if m.ID == id || (id == "" && m.Type == signaling.TypeError) {
			return m
		}
	}
}

// read returns the next server message, or the socket's error.
func (r *raw) read(ctx context.Context) (signaling.Message, error) {
	_, data, err := r.conn.Read(ctx)
	if err != nil {
		return signaling.Message{}, err
	}
	var m signaling.Message
	if err := json.Unmarshal(data, &m); err != nil {
		r.t.Fatalf("server sent non-JSON: %q", data)
	}
	return m, nil
}

func (r *raw) request(ctx context.Context, m signaling.Message) signaling.Message {
	r.t.Helper()
	b, _ := json.Marshal(m)
	return r.send(ctx, b, m.ID)
}

func signWith(t *testing.T, m jwt.SigningMethod, key any, kid string, c token.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJoinRefusals(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 60*time.Second)

	// A running consultation that every refusal below must leave unharmed.
	pat := e.dial(ctx, e.patient("p1", "c1"), false)
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), false)

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	ok := claims("d9", token.RoleClinician, "c9", "p9", false)
	expired := ok
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	wrongAud := ok
	wrongAud.Audience = jwt.ClaimStrings{"someone-else"}
	noneTok := signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "ed1", ok)
	// Algorithm confusion: an HS256 token whose "secret" is the EdDSA public key, under the EdDSA kid.
	confused := signWith(t, jwt.SigningMethodHS256, []byte(e.keys.Keys[0].Public), "ed1", ok)

	cases := []struct {
		name, tok, consultation, code string
	}{
		{"no token", "", "", signaling.CodeTokenMissing},
		{"forged signature", signWith(t, jwt.SigningMethodEdDSA, otherKey, "ed1", ok), "", signaling.CodeTokenInvalid},
		{"unknown kid", signWith(t, jwt.SigningMethodEdDSA, otherKey, "nope", ok), "", signaling.CodeTokenInvalid},
		{"wrong aud", e.mint(wrongAud), "", signaling.CodeTokenInvalid},
		{"expired", e.mint(expired), "", signaling.CodeTokenExpired},
		{"alg none", noneTok, "", signaling.CodeTokenInvalid},
		{"HS256 against an EdDSA key", confused, "", signaling.CodeTokenInvalid},
		{"garbage token", "not.a.jwt", "", signaling.CodeTokenInvalid},
		{"bad sub syntax", e.mint(claims("d 9", token.RoleClinician, "c9", "p9", false)), "", signaling.CodeBadID},
		{"bad cid syntax", e.mint(claims("d9", token.RoleClinician, "../c9", "p9", false)), "", signaling.CodeBadID},
		{"bad pid syntax", e.mint(claims("d9", token.RoleClinician, "c9", "jane.doe@example.org", false)), "", signaling.CodeBadID},
		{"cid A token for consultation B", e.mint(ok), "c-other", signaling.CodeWrongConsultation},
		{"odd consultation field", e.mint(ok), "c9/../../x", signaling.CodeBadID},
		{"same cid, other pid", e.mint(claims("d2", token.RoleClinician, "c1", "p2", false)), "", signaling.CodeBindingMismatch},
		{"same cid, other rec", e.mint(claims("d2", token.RoleClinician, "c1", "p1", true)), "", signaling.CodeBindingMismatch},
		{"patient whose sub is not pid", e.mint(claims("p2", token.RolePatient, "c9", "p9", false)), "", signaling.CodeForbidden},
		{"unknown role", e.mint(claims("x9", "admin", "c9", "p9", false)), "", signaling.CodeTokenInvalid},
		{"replay token used to join", e.mint(claims("d9", token.RoleClinician, "", "", false)), "", signaling.CodeTokenInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(ctx)
			m := r.request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: tc.tok, Consultation: tc.consultation})
			if m.Type != signaling.TypeError || m.Code != tc.code {
				t.Fatalf("got %s %q (%s), want error %q", m.Type, m.Code, m.Message, tc.code)
			}
			if tc.tok != "" && strings.Contains(m.Message, tc.tok) {
				t.Errorf("error message echoes the token")
			}
		})
	}

	t.Run("fifth participant", func(t *testing.T) {
		e.dial(ctx, e.clinician("d2", "p1", "c1"), false)
		e.dial(ctx, e.mint(claims("g1", token.RoleGuest, "c1", "p1", false)), false)
		_, err := client.Dial(ctx, client.Options{URL: e.url, Token: e.mint(claims("g2", token.RoleGuest, "c1", "p1", false))})
		var pe *client.ProtocolError
		if !asProtocolError(err, &pe) || pe.Code != signaling.CodeConsultationFull {
			t.Fatalf("fifth join: %v, want %s", err, signaling.CodeConsultationFull)
		}
	})

	t.Run("message errors", func(t *testing.T) {
		r := e.raw(ctx)
		if m := r.send(ctx, []byte(`{"type":"join",`), ""); m.Code != signaling.CodeBadMessage {
			t.Errorf("malformed JSON: %q, want %s", m.Code, signaling.CodeBadMessage)
		}
		if m := r.send(ctx, []byte(`{"type":"join","id":"x","token":123}`), ""); m.Code != signaling.CodeBadMessage {
			t.Errorf("wrong field type: %q, want %s", m.Code, signaling.CodeBadMessage)
		}
		big := `{"type":"ping","id":"big","sdp":"` + strings.Repeat("x", 100<<10) + `"}`
		if m := r.send(ctx, []byte(big), ""); m.Code != signaling.CodeTooLarge {
			t.Errorf("oversized: %q, want %s", m.Code, signaling.CodeTooLarge)
		}
		if m := r.request(ctx, signaling.Message{Type: "teleport", ID: "u"}); m.Code != signaling.CodeUnknownType {
			t.Errorf("unknown type: %q, want %s", m.Code, signaling.CodeUnknownType)
		}
		if m := r.request(ctx, signaling.Message{Type: signaling.TypeOffer, ID: "o", PC: "publish", SDP: "v=0"}); m.Code != signaling.CodeNotJoined {
			t.Errorf("offer before join: %q, want %s", m.Code, signaling.CodeNotJoined)
		}
		// The socket still works after all that.
		if m := r.request(ctx, signaling.Message{Type: signaling.TypePing, ID: "p"}); m.Type != signaling.TypePong {
			t.Errorf("ping after errors: %s", m.Type)
		}
	})

	t.Run("garbage SDP", func(t *testing.T) {
		r := e.raw(ctx)
		if m := r.request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: e.clinician("d3", "p3", "c3")}); m.Type != signaling.TypeJoined {
			t.Fatalf("join: %s %s", m.Code, m.Message)
		}
		// An offer without sdp misses a required field (PROTOCOL.md: bad_request).
		if m := r.request(ctx, signaling.Message{Type: signaling.TypeOffer, ID: "s", PC: "publish"}); m.Code != signaling.CodeBadRequest {
			t.Errorf("offer without sdp: got %q (%s), want %s", m.Code, m.Message, signaling.CodeBadRequest)
		}
		for i, sdp := range []string{"hello", "v=0\r\no=- 0 0 IN IP4 0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", strings.Repeat("m=video\r\n", 5000)} {
			id := "s" + string(rune('0'+i))
			if m := r.request(ctx, signaling.Message{Type: signaling.TypeOffer, ID: id, PC: "publish", SDP: sdp}); m.Code != signaling.CodeBadSDP {
				t.Errorf("sdp %d: got %q (%s), want %s", i, m.Code, m.Message, signaling.CodeBadSDP)
			}
		}
		// An answer with no subscribe offer waiting is out of order (bad_sdp).
		if m := r.request(ctx, signaling.Message{Type: signaling.TypeAnswer, ID: "a", PC: "subscribe", SDP: "garbage"}); m.Code != signaling.CodeBadSDP {
			t.Errorf("answer with no offer: got %q (%s), want %s", m.Code, m.Message, signaling.CodeBadSDP)
		}
	})

	// The running consultation was never disturbed, and new joins still work.
	a0 := doc.Received("p1", "audio").Packets
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(a0+50)); err != nil {
		t.Fatalf("consultation c1 harmed: %v", err)
	}
	if _, err := pat.WaitReceived(ctx, "d1", "audio", atLeast(50)); err != nil {
		t.Fatalf("consultation c1 harmed: %v", err)
	}
	x := e.dial(ctx, e.patient("p7", "c7"), false)
	y := e.dial(ctx, e.clinician("d7", "p7", "c7"), false)
	if _, err := y.WaitReceived(ctx, "p7", "audio", atLeast(20)); err != nil {
		t.Fatalf("new consultation after refusals: %v", err)
	}
	_ = x
}
