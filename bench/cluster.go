package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// entries is the cluster's entry URLs (--url a,b,c) and where each
// participant landed after redirects, for the per-node spread.
type entries struct {
	urls   []string
	mu     sync.Mutex
	landed map[string]int // node URL -> participants joined there
}

func newEntries(url string) *entries {
	return &entries{urls: strings.Split(url, ","), landed: map[string]int{}}
}

// entry is the URL participant k dials: the entries in turn, so the
// participants of one consultation usually enter at different nodes.
func (e *entries) entry(k int) string { return e.urls[k%len(e.urls)] }

// land counts a participant that joined on node url.
func (e *entries) land(url string) {
	e.mu.Lock()
	e.landed[url]++
	e.mu.Unlock()
}

// spread is the participants per node.
func (e *entries) spread() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.landed))
	for k, v := range e.landed {
		out[k] = v
	}
	return out
}

// writeSpread prints the participants per node and each node's share
// against an even one.
func writeSpread(w io.Writer, nodes map[string]int) {
	if len(nodes) == 0 {
		return
	}
	total := 0
	for _, v := range nodes {
		total += v
	}
	urls := make([]string, 0, len(nodes))
	for u := range nodes {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	even := float64(total) / float64(len(nodes))
	fmt.Fprintf(w, "participants per node (%d %s, %d participants):\n", len(nodes), plural(len(nodes), "node", "nodes"), total)
	for _, u := range urls {
		fmt.Fprintf(w, "  %-40s %5d  (%+.0f%% of even)\n", u, nodes[u], 100*(float64(nodes[u])-even)/even)
	}
}

// plural is one or many as n says.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
