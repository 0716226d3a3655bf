package web_test

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/medcall/medcall/signaling"
)

// jsImport matches a static import or re-export of a sibling module.
var jsImport = regexp.MustCompile(`(?m)^(?:import|export) \{[^}]*\} from '\./([a-z]+\.js)';$`)

// clientModules returns the files of the browser client: static/medcall.js
// and every module it imports, directly or not, medcall.js first.
func clientModules(t *testing.T) []string {
	t.Helper()
	files := []string{"medcall.js"}
	for i := 0; i < len(files); i++ {
		b, err := os.ReadFile("static/" + files[i])
		if err != nil {
			t.Fatalf("the browser client imports %s: %v", files[i], err)
		}
		for _, m := range jsImport.FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(files, m[1]) {
				files = append(files, m[1])
			}
		}
	}
	return files
}

// jsClient is the browser client's source: static/medcall.js and the
// modules it imports, one after the other.
func jsClient(t *testing.T) string {
	t.Helper()
	var src strings.Builder
	for _, f := range clientModules(t) {
		b, err := os.ReadFile("static/" + f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
		src.WriteString("\n")
	}
	return src.String()
}

// jsExport returns the body of `export const NAME = Object.freeze(...)`.
func jsExport(t *testing.T, src, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)export const ` + name + ` = Object\.freeze\(([\[{].*?[\]}])\);`)
	m := re.FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("medcall.js has no `export const %s = Object.freeze(...)`", name)
	}
	return m[1]
}

var quoted = regexp.MustCompile(`'([a-z_]+)'`)

// jsStrings returns the single-quoted strings in s, in order.
func jsStrings(s string) []string {
	var out []string
	for _, m := range quoted.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func equalSets(t *testing.T, what string, js, goSide []string) {
	t.Helper()
	a, b := slices.Clone(js), slices.Clone(goSide)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Errorf("%s: medcall.js has %v, the Go code has %v", what, a, b)
	}
}

// docReplies reads the reply column of PROTOCOL.md's "Client requests" table:
// request type -> the first reply type named.
func docReplies(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\|.*\\| `([a-z_]+)`[^|]*\\|$")
	out := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Client requests"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			out[m[1]] = m[2]
		}
	}
	if len(out) == 0 {
		t.Fatal("no rows found in PROTOCOL.md's Client requests table")
	}
	return out
}

// TestJSClientMatchesProtocol keeps the browser client in step with the Go
// server and PROTOCOL.md (signaling/protocol_test.go keeps PROTOCOL.md in step
// with the server): the same message types and error codes, every request
// sent, every server message handled, every reply the one the doc names.
func TestJSClientMatchesProtocol(t *testing.T) {
	src := jsClient(t)

	requests := jsStrings(jsExport(t, src, "ClientRequests"))
	server := jsStrings(jsExport(t, src, "ServerMessages"))
	equalSets(t, "client requests", requests, signaling.ClientRequests)
	equalSets(t, "server messages", server, signaling.ServerMessages)

	codes := jsStrings(jsExport(t, src, "ErrorCodes"))
	equalSets(t, "error codes", codes, signaling.ErrorCodes)
	for _, c := range jsStrings(jsExport(t, src, "ClientErrorCodes")) {
		if slices.Contains(signaling.ErrorCodes, c) {
			t.Errorf("client-side error code %q is also a server code", c)
		}
	}

	// Replies: {request: reply, ...} must be the doc's reply column.
	pairs := jsStrings(regexp.MustCompile(`(\w+): '`).ReplaceAllString(jsExport(t, src, "Replies"), "'$1': '"))
	replies := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		replies[pairs[i]] = pairs[i+1]
	}
	doc := docReplies(t)
	for _, r := range signaling.ClientRequests {
		if replies[r] == "" || replies[r] != doc[r] {
			t.Errorf("reply to %s: medcall.js expects %q, PROTOCOL.md says %q", r, replies[r], doc[r])
		}
		if !slices.Contains(signaling.ServerMessages, replies[r]) {
			t.Errorf("reply to %s: %q is not a server message", r, replies[r])
		}
		// Every request is actually sent somewhere.
		if !strings.Contains(src, "this._request('"+r+"'") {
			t.Errorf("medcall.js never sends %s", r)
		}
	}

	// Server messages that are not (only) replies are dispatched by type;
	// error replies reject the request.
	replyTypes := map[string]bool{}
	for _, v := range replies {
		replyTypes[v] = true
	}
	for _, m := range signaling.ServerMessages {
		if (!replyTypes[m] || m == signaling.TypeError) && !strings.Contains(src, "case '"+m+"':") {
			t.Errorf("medcall.js does not handle server message %s", m)
		}
	}
	if !strings.Contains(src, "m.type === 'error'") {
		t.Error("medcall.js does not turn error replies into rejections")
	}

	// Both upgrade paths are named as the server expects them.
	for _, p := range []string{signaling.PathPrenegotiated, signaling.PathRenegotiate} {
		if !strings.Contains(src, "path = '"+p+"'") {
			t.Errorf("medcall.js never upgrades by path %q", p)
		}
	}

	// The token goes in the first message, never in the socket's URL.
	for _, line := range strings.Split(src, "\n") {
		if strings.Contains(line, "new WebSocket(") && strings.Contains(strings.ToLower(line), "token") {
			t.Errorf("the WebSocket URL may carry the token: %s", strings.TrimSpace(line))
		}
	}
}
