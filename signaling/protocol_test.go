package signaling_test

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/medcall/medcall/signaling"
)

// protocolTables reads PROTOCOL.md and returns, for each "## " section, the
// backticked names in the first column of its tables.
func protocolTables(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := regexp.MustCompile("^\\| `([a-z_]+)` \\|")
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
		}
		if m := first.FindStringSubmatch(line); m != nil {
			out[section] = append(out[section], m[1])
		}
	}
	return out
}

func sameSet(t *testing.T, what string, doc, code []string) {
	t.Helper()
	a, b := slices.Clone(doc), slices.Clone(code)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Errorf("%s: PROTOCOL.md lists %v, the code has %v", what, a, b)
	}
}

// TestProtocolDocMatchesCode keeps PROTOCOL.md and the server in step.
func TestProtocolDocMatchesCode(t *testing.T) {
	tables := protocolTables(t)
	sameSet(t, "client requests", tables["Client requests"], signaling.ClientRequests)
	sameSet(t, "server messages", tables["Server replies and events"], signaling.ServerMessages)
	sameSet(t, "error codes", tables["Error codes"], signaling.ErrorCodes)

	// Every field the Message struct carries is named in the doc.
	doc, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	rt := reflect.TypeOf(signaling.Message{})
	for i := range rt.NumField() {
		name := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		if !strings.Contains(string(doc), "`"+name) {
			t.Errorf("field %q of Message is not documented in PROTOCOL.md", name)
		}
	}
	// And every documented message round-trips through the struct without loss.
	for _, typ := range append(signaling.ClientRequests, signaling.ServerMessages...) {
		b, _ := json.Marshal(signaling.Message{Type: typ, ID: "1"})
		var m signaling.Message
		if err := json.Unmarshal(b, &m); err != nil || m.Type != typ {
			t.Errorf("%s does not round-trip: %v", typ, err)
		}
	}
}
