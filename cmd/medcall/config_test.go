package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEConfigurationTableListsEveryServeFlag: the README's
// Configuration table names every option `medcall serve --help` lists, and
// no option serve does not have.
func TestREADMEConfigurationTableListsEveryServeFlag(t *testing.T) {
	var help bytes.Buffer
	_, parse := serveFlags(&help)
	_ = parse([]string{"--help"})
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)$`).FindAllStringSubmatch(help.String(), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 20 {
		t.Fatalf("serve --help listed %d options; the test reads its format wrong", len(flags))
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n## Configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, row := range regexp.MustCompile("(?m)^\\| (`--[a-z0-9-]+`(?:, `--[a-z0-9-]+`)*) \\|").FindAllStringSubmatch(section, -1) {
		for _, f := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(row[1], -1) {
			documented = append(documented, f[1])
		}
	}
	for _, f := range flags {
		if !slices.Contains(documented, f) {
			t.Errorf("--%s is not in the README's Configuration table", f)
		}
	}
	for _, f := range documented {
		if !slices.Contains(flags, f) {
			t.Errorf("the README's Configuration table lists --%s, which serve does not have", f)
		}
	}
}
