package signaling_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
)

// schemaDoc is protocol.schema.json as plain JSON, for reading its enums.
type schemaDoc struct {
	Defs map[string]struct {
		Properties map[string]struct {
			Const any   `json:"const"`
			Enum  []any `json:"enum"`
			Ref   string
		} `json:"properties"`
		OneOf []struct {
			Ref string `json:"$ref"`
		} `json:"oneOf"`
	} `json:"$defs"`
}

func loadSchemaDoc(t *testing.T) schemaDoc {
	t.Helper()
	var d schemaDoc
	if err := json.Unmarshal(signaling.Schema, &d); err != nil {
		t.Fatalf("protocol.schema.json: %v", err)
	}
	return d
}

// branchTypes returns the `type` consts of the oneOf branches of def.
func (d schemaDoc) branchTypes(t *testing.T, def string) (types []string, branches []string) {
	t.Helper()
	for _, b := range d.Defs[def].OneOf {
		name := strings.TrimPrefix(b.Ref, "#/$defs/")
		c, _ := d.Defs[name].Properties["type"].Const.(string)
		if c == "" {
			t.Errorf("schema: %s branch %s has no type const", def, name)
		}
		types = append(types, c)
		branches = append(branches, name)
	}
	return types, branches
}

func enumStrings(vs []any) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestSchemaMatchesProtocol keeps protocol.schema.json in step with the Go
// code (and so, through TestProtocolDocMatchesCode, with PROTOCOL.md): the
// same message types in each direction, the same error codes, upgrade paths
// and bye reasons, and every field of Message used by some message.
func TestSchemaMatchesProtocol(t *testing.T) {
	if _, err := signaltest.LoadSchema(); err != nil {
		t.Fatal(err)
	}
	d := loadSchemaDoc(t)
	clientTypes, clientDefs := d.branchTypes(t, "clientMessage")
	serverTypes, serverDefs := d.branchTypes(t, "serverMessage")
	sameSet(t, "schema client messages", clientTypes, signaling.ClientRequests)
	sameSet(t, "schema server messages", serverTypes, signaling.ServerMessages)
	sameSet(t, "schema error codes", enumStrings(d.Defs["error"].Properties["code"].Enum), signaling.ErrorCodes)
	sameSet(t, "schema upgrade paths", enumStrings(d.Defs["media"].Properties["path"].Enum),
		[]string{signaling.PathPrenegotiated, signaling.PathRenegotiate})
	sameSet(t, "schema bye reasons", enumStrings(d.Defs["bye"].Properties["reason"].Enum), signaling.ByeReasons)

	// Each request carries the fields the server accepts for it, no more.
	for i, def := range clientDefs {
		var props []string
		for name := range d.Defs[def].Properties {
			props = append(props, name)
		}
		sameSet(t, "schema fields of "+clientTypes[i]+" vs the server's", props, signaling.RequestFields(clientTypes[i]))
	}

	used := map[string]bool{}
	for _, def := range append(clientDefs, serverDefs...) {
		for name := range d.Defs[def].Properties {
			used[name] = true
		}
	}
	rt := reflect.TypeOf(signaling.Message{})
	var fields []string
	for i := range rt.NumField() {
		fields = append(fields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
	}
	var usedNames []string
	for n := range used {
		usedNames = append(usedNames, n)
	}
	sameSet(t, "schema fields vs Message fields", usedNames, fields)
	if !slices.Contains(fields, "id") {
		t.Error("Message has no id field")
	}
}

// TestSchemaExamples: what a conforming peer sends is valid, and the
// mistakes the server refuses as malformed are invalid too.
func TestSchemaExamples(t *testing.T) {
	s, err := signaltest.LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	client := []struct {
		msg   string
		valid bool
	}{
		{`{"type":"join","id":"1","token":"a.b.c"}`, true},
		{`{"type":"join","id":"1","token":"a.b.c","consultation":"c-1"}`, true},
		{`{"type":"offer","id":"2","pc":"publish","sdp":"v=0"}`, true},
		{`{"type":"answer","id":"3","pc":"subscribe","sdp":"v=0"}`, true},
		{`{"type":"candidate","id":"4","pc":"subscribe","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}`, true},
		{`{"type":"candidate","pc":"publish","candidate":{"candidate":"","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}}`, true},
		{`{"type":"media","id":"5","audio":true}`, true},
		{`{"type":"media","id":"6","video":true,"path":"renegotiate"}`, true},
		{`{"type":"leave","id":"7"}`, true},
		{`{"type":"ping"}`, true},
		{`{"type":"restart","id":"8","pc":"subscribe"}`, true},
		{`{"type":"join","id":"1","token":"a.b.c","resume":"c2VjcmV0"}`, true},

		{`{"TYPE":"ping","Id":"x"}`, false},
		{`{"type":"ping","Id":"x"}`, false},
		{`{"type":"ping","id":""}`, false},
		{`{"type":"ping","id":"` + strings.Repeat("x", 65) + `"}`, false},
		{`{"type":"join","id":"1","token":123}`, false},
		{`{"type":"join","id":"1"}`, false},
		{`{"type":"join","id":"1","token":"t","extra":1}`, false},
		{`{"type":"offer","id":"2","pc":"subscribe","sdp":"v=0"}`, false},
		{`{"type":"offer","id":"2","pc":"publish"}`, false},
		{`{"type":"answer","id":"3","pc":"publish","sdp":"v=0"}`, false},
		{`{"type":"candidate","id":"4","pc":"publish"}`, false},
		{`{"type":"candidate","id":"4","pc":"publish","candidate":{"candidate":"x","SDPMid":"0"}}`, false},
		{`{"type":"media","id":"5"}`, false},
		{`{"type":"media","id":"5","video":true,"path":"renegotiation"}`, false},
		{`{"type":"media","id":"5","video":"yes"}`, false},
		{`{"type":"teleport","id":"u"}`, false},
		{`{"type":"restart","id":"8","pc":"publish"}`, false},
		{`{"type":"restart","id":"8"}`, false},
		{`{"type":"join","id":"1","token":"t","resume":""}`, false},
		{`{"type":"joined","id":"1"}`, false},
		{`[]`, false},
	}
	for _, tc := range client {
		if err := s.CheckClient([]byte(tc.msg)); (err == nil) != tc.valid {
			t.Errorf("client %s: valid=%v, want %v (%v)", tc.msg, err == nil, tc.valid, err)
		}
	}
	server := []struct {
		msg   string
		valid bool
	}{
		{`{"type":"joined","id":"1","consultation":"c-1","participant":{"id":"p-1","role":"patient","audio":false,"video":false},"participants":[],"recording":true}`, true},
		{`{"type":"joined","id":"1","consultation":"c-1","participant":{"id":"p-1","role":"patient","audio":true,"video":false},"participants":[],"recording":true,"resume":"c2VjcmV0","resumed":true}`, true},
		{`{"type":"joined","id":"1","consultation":"c-1","participant":{"id":"p-1","role":"patient","audio":true,"video":false},"participants":[],"recording":true,"resumed":false}`, false},
		{`{"type":"error","id":"1","code":"resume_failed","message":"join anew"}`, true},
		{`{"type":"joined","id":"1","consultation":"c-1","participant":{"id":"p-1","role":"patient","audio":false,"video":false},"recording":true}`, false},
		{`{"type":"answer","id":"2","pc":"publish","sdp":"v=0"}`, true},
		{`{"type":"ack","id":"3"}`, true},
		{`{"type":"pong","id":"4"}`, true},
		{`{"type":"error","id":"5","code":"rate_limited","message":"slow down"}`, true},
		{`{"type":"error","code":"bad_message","message":"not JSON"}`, true},
		{`{"type":"error","code":"no_such_code","message":"?"}`, false},
		{`{"type":"offer","pc":"subscribe","sdp":"v=0"}`, true},
		{`{"type":"offer","id":"9","pc":"subscribe","sdp":"v=0"}`, false},
		{`{"type":"candidate","pc":"subscribe","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}`, true},
		{`{"type":"participant","event":"left","participant":{"id":"d-1","role":"clinician","audio":true,"video":false}}`, true},
		{`{"type":"participant","event":"left","participant":{"id":"jane doe","role":"clinician","audio":true,"video":false}}`, false},
		{`{"type":"bye","reason":"left"}`, true},
		{`{"type":"bye","reason":"timeout"}`, false},
		{`{"type":"ping","id":"1"}`, false},
	}
	for _, tc := range server {
		if err := s.CheckServer([]byte(tc.msg)); (err == nil) != tc.valid {
			t.Errorf("server %s: valid=%v, want %v (%v)", tc.msg, err == nil, tc.valid, err)
		}
	}
}

// typeTrace checks every message a Go client sends and receives against the
// schema and records which types went each way.
type typeTrace struct {
	mu         sync.Mutex
	sent, recv map[string]bool
}

func (tt *typeTrace) hook(check func(sent bool, data []byte)) func(bool, []byte) {
	return func(sent bool, data []byte) {
		check(sent, data)
		var m struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(data, &m)
		tt.mu.Lock()
		defer tt.mu.Unlock()
		if sent {
			tt.sent[m.Type] = true
		} else {
			tt.recv[m.Type] = true
		}
	}
}

func (tt *typeTrace) missing(want []string, sent bool) []string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var out []string
	for _, w := range want {
		if (sent && !tt.sent[w]) || (!sent && !tt.recv[w]) {
			out = append(out, w)
		}
	}
	return out
}

// TestGoClientFollowsSchema runs the Go client through a whole call — join,
// both upgrade paths, downgrade, an ICE restart, ping, a refused request, leave — and checks
// every message it sends and receives against protocol.schema.json, proving
// that each client request and each server message type was among them.
func TestGoClientFollowsSchema(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 40*time.Second)
	tt := &typeTrace{sent: map[string]bool{}, recv: map[string]bool{}}
	v := signaltest.NewViolations(t)
	dial := func(tok string, pre bool) *client.Client {
		c, err := client.Dial(ctx, client.Options{URL: e.url, Token: tok, AudioFile: audioFile, VideoFile: videoFile,
			Prenegotiate: pre, Trace: tt.hook(signaltest.Trace(t, v))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pat := dial(e.patient("p1", "c1"), true)
	doc := dial(e.clinician("d1", "p1", "c1"), false)
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(10)); err != nil {
		t.Fatal(err)
	}
	if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	if err := doc.Upgrade(ctx, signaling.PathRenegotiate); err != nil {
		t.Fatal(err)
	}
	if _, err := pat.WaitReceived(ctx, "d1", "video", hasKeyframe); err != nil {
		t.Fatal(err)
	}
	if err := pat.Downgrade(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pat.RestartICE(ctx); err != nil { // a network change, over the same socket
		t.Fatal(err)
	}
	if _, err := pat.Request(ctx, signaling.Message{Type: signaling.TypePing}); err != nil {
		t.Fatal(err)
	}
	var pe *client.ProtocolError
	if _, err := pat.Request(ctx, signaling.Message{Type: signaling.TypeJoin, Token: "x"}); !asProtocolError(err, &pe) || pe.Code != signaling.CodeAlreadyJoined {
		t.Fatalf("second join: %v, want %s", err, signaling.CodeAlreadyJoined)
	}
	if _, err := doc.Request(ctx, signaling.Message{Type: signaling.TypeLeave}); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye }); err != nil {
		t.Fatal(err)
	}
	if _, err := pat.WaitEvent(ctx, func(m signaling.Message) bool { return m.Event == "left" }); err != nil {
		t.Fatal(err)
	}
	if miss := tt.missing(signaling.ClientRequests, true); len(miss) > 0 {
		t.Errorf("the call never sent %v", miss)
	}
	// A single server never redirects; signaling/cluster's tests hold redirect to the schema.
	if miss := slices.DeleteFunc(tt.missing(signaling.ServerMessages, false), func(t string) bool { return t == signaling.TypeRedirect }); len(miss) > 0 {
		t.Errorf("the call never received %v", miss)
	}
	t.Logf("%d client-side messages checked against the schema", v.Seen())
}

// TestSchemaMatchesJSClient closes the triangle for the browser client
// (signaling/web keeps medcall.js in step with the Go code and PROTOCOL.md):
// medcall.js's message types, replies and error codes are the schema's, and
// the upgrade paths it sends are the schema's media paths.
func TestSchemaMatchesJSClient(t *testing.T) {
	// medcall.js names the upgrade paths; protocol.js, which it re-exports, the rest.
	var src string
	for _, f := range []string{"web/static/medcall.js", "web/static/protocol.js"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src += string(b)
	}
	export := func(name string) []string {
		m := regexp.MustCompile(`(?s)export const ` + name + ` = Object\.freeze\(([\[{].*?[\]}])\);`).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("medcall.js has no `export const %s = Object.freeze(...)`", name)
		}
		var out []string
		for _, q := range regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(m[1], -1) {
			out = append(out, q[1])
		}
		return out
	}
	d := loadSchemaDoc(t)
	clientTypes, _ := d.branchTypes(t, "clientMessage")
	serverTypes, _ := d.branchTypes(t, "serverMessage")
	sameSet(t, "medcall.js ClientRequests vs schema", export("ClientRequests"), clientTypes)
	sameSet(t, "medcall.js ServerMessages vs schema", export("ServerMessages"), serverTypes)
	sameSet(t, "medcall.js ErrorCodes vs schema", export("ErrorCodes"), enumStrings(d.Defs["error"].Properties["code"].Enum))
	for _, reply := range export("Replies") {
		if !slices.Contains(serverTypes, reply) {
			t.Errorf("medcall.js expects reply %q, which the schema does not have", reply)
		}
	}
	for _, p := range enumStrings(d.Defs["media"].Properties["path"].Enum) {
		if !strings.Contains(src, "'"+p+"'") {
			t.Errorf("medcall.js never names upgrade path %q", p)
		}
	}
}
