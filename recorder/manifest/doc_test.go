package manifest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/medcall/medcall/sfu"
)

// TestDocNamesSignedEvents keeps the predicate's documentation (doc.go) in
// step with what is signed: the event types and upgrade paths the SFU
// reports are the ones the recorder writes into events[].
func TestDocNamesSignedEvents(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// The events line, its comment continuation folded into one string.
	doc := strings.Join(strings.Fields(strings.ReplaceAll(string(b), "//", "")), "")
	m := regexp.MustCompile(`events\[\{type\(([a-z_|]+)\),.*?path\(upgradeonly:([a-z|]+)\)`).FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("doc.go does not document events as [{type (a|b|...), ..., path (upgrade only: x|y)}]")
	}
	var types []string
	for _, e := range sfu.EventTypes {
		types = append(types, string(e))
	}
	same := func(what string, doc, code []string) {
		slices.Sort(doc)
		slices.Sort(code)
		if !slices.Equal(doc, code) {
			t.Errorf("%s: doc.go lists %v, the signed manifest uses %v", what, doc, code)
		}
	}
	same("event types", strings.Split(m[1], "|"), types)
	same("upgrade paths", strings.Split(m[2], "|"), []string{sfu.PathPrenegotiated, sfu.PathRenegotiate})
}
