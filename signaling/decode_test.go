package signaling_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/signaltest"
)

// next reads the next server message.
func (r *raw) next(ctx context.Context) signaling.Message {
	r.t.Helper()
	m, err := r.read(ctx)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return m
}

// TestMalformedFramesAnswered sends, on a joined socket, frames the server
// must refuse for their shape: each is answered by exactly one error with the
// code PROTOCOL.md names, carrying the frame's id whenever the frame has a
// well-formed one; the schema refuses each frame too; and the socket goes on
// working.
func TestMalformedFramesAnswered(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	schema, err := signaltest.LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	r := e.raw(ctx)
	if m := r.request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: e.patient("p1", "c1")}); m.Type != signaling.TypeJoined {
		t.Fatalf("join: %s %s", m.Code, m.Message)
	}
	cases := []struct {
		name, frame, code, id string
	}{
		{"upper-case field names", `{"TYPE":"ping","Id":"x"}`, signaling.CodeBadMessage, ""},
		{"mixed-case id", `{"type":"ping","Id":"x1"}`, signaling.CodeBadMessage, ""},
		{"mixed-case type", `{"Type":"ping","id":"x2"}`, signaling.CodeBadMessage, "x2"},
		{"unknown field", `{"type":"ping","id":"u1","colour":"red"}`, signaling.CodeBadMessage, "u1"},
		{"field of another message", `{"type":"ping","id":"u2","sdp":"v=0"}`, signaling.CodeBadMessage, "u2"},
		{"server-only field", `{"type":"media","id":"u3","audio":true,"code":"x"}`, signaling.CodeBadMessage, "u3"},
		{"unknown candidate field", `{"type":"candidate","id":"u4","pc":"publish","candidate":{"candidate":"x","SDPMid":"0"}}`, signaling.CodeBadMessage, "u4"},
		{"wrong type: token", `{"type":"join","id":"w1","token":123}`, signaling.CodeBadMessage, "w1"},
		{"wrong type: audio", `{"type":"media","id":"w2","audio":"yes"}`, signaling.CodeBadMessage, "w2"},
		{"wrong type: candidate", `{"type":"candidate","id":"w3","pc":"publish","candidate":"x"}`, signaling.CodeBadMessage, "w3"},
		{"wrong type: id", `{"type":"ping","id":7}`, signaling.CodeBadMessage, ""},
		{"two objects", `{"type":"ping","id":"t1"}{"type":"ping","id":"t2"}`, signaling.CodeBadMessage, ""},
		{"not an object", `["ping"]`, signaling.CodeBadMessage, ""},
		{"empty id", `{"type":"ping","id":""}`, signaling.CodeBadRequest, ""},
		{"id over 64", `{"type":"ping","id":"` + strings.Repeat("i", 65) + `"}`, signaling.CodeBadRequest, ""},
		{"unknown type", `{"type":"teleport","id":"k1"}`, signaling.CodeUnknownType, "k1"},
		{"offer on subscribe", `{"type":"offer","id":"b1","pc":"subscribe","sdp":"v=0"}`, signaling.CodeBadRequest, "b1"},
		{"offer without sdp", `{"type":"offer","id":"b2","pc":"publish"}`, signaling.CodeBadRequest, "b2"},
		{"answer without sdp", `{"type":"answer","id":"b3","pc":"subscribe"}`, signaling.CodeBadRequest, "b3"},
		{"candidate without object", `{"type":"candidate","id":"b4","pc":"publish"}`, signaling.CodeBadRequest, "b4"},
		{"media without a kind", `{"type":"media","id":"b5"}`, signaling.CodeBadRequest, "b5"},
		{"media with a bad path", `{"type":"media","id":"b6","video":true,"path":"renegotiation"}`, signaling.CodeBadRequest, "b6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if schema.CheckClient([]byte(tc.frame)) == nil {
				t.Errorf("protocol.schema.json accepts %s, which the server refuses", tc.frame)
			}
			if err := r.conn.Write(ctx, websocket.MessageText, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			m := r.next(ctx)
			if m.Type != signaling.TypeError || m.Code != tc.code || m.ID != tc.id {
				t.Fatalf("got %s code %q id %q (%s), want error %q with id %q", m.Type, m.Code, m.ID, m.Message, tc.code, tc.id)
			}
			// Exactly one reply: the next thing the socket answers is our ping.
			if m := r.request(ctx, signaling.Message{Type: signaling.TypePing, ID: "after-" + tc.name}); m.Type != signaling.TypePong {
				t.Fatalf("ping after %s: %s %s", tc.name, m.Type, m.Code)
			}
		})
	}
	// Too large: answered with its id; a binary frame: bad_message.
	big := `{"type":"ping","id":"big","sdp":"` + strings.Repeat("x", 100<<10) + `"}`
	if m := r.send(ctx, []byte(big), "big"); m.Code != signaling.CodeTooLarge {
		t.Errorf("oversized: %s %q, want %s with its id", m.Type, m.Code, signaling.CodeTooLarge)
	}
	if err := r.conn.Write(ctx, websocket.MessageBinary, []byte(`{"type":"ping","id":"bin"}`)); err != nil {
		t.Fatal(err)
	}
	if m := r.next(ctx); m.Code != signaling.CodeBadMessage || m.ID != "bin" {
		t.Errorf("binary frame: %s %q id %q, want %s with its id", m.Type, m.Code, m.ID, signaling.CodeBadMessage)
	}
}
