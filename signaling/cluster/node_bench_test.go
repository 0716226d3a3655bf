package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
)

// BenchmarkPlace is the placement a join pays on its entry node: one Lua
// script on Redis that places a new consultation (or finds its host).
func BenchmarkPlace(b *testing.B) {
	c := newCluster(b, 3)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.nodes[0].node.Place(ctx, fmt.Sprintf("c-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoin compares a join (socket, join, joined; listen-only) entering
// at the consultation's host with one entering elsewhere and redirected,
// and with a node that runs alone (no placement at all).
func BenchmarkJoin(b *testing.B) {
	c := newCluster(b, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(b *testing.B, tag string, entry func(host int) *node) {
		for i := range b.N {
			cid := fmt.Sprintf("c-%s-%d", tag, i)
			host := 0
			if url, err := c.nodes[0].node.Place(ctx, cid); err != nil {
				b.Fatal(err)
			} else if url != "" {
				host = 1
			}
			tok := c.keys0().Patient("p-1", cid, false)
			b.StartTimer()
			cl, err := c.join(ctx, entry(host), tok)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			cl.Close()
		}
	}
	b.Run("alone", func(b *testing.B) {
		env := signaltest.Start(b, sfu.Config{}) // no cluster: no placement
		for i := range b.N {
			cl, err := client.Dial(ctx, client.Options{URL: env.URL, Token: env.Patient("p-1", fmt.Sprintf("c-alone-%d", i), false)})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cl.Close()
			b.StartTimer()
		}
	})
	b.Run("at-host", func(b *testing.B) { b.StopTimer(); run(b, "host", func(h int) *node { return c.nodes[h] }) })
	b.Run("redirected", func(b *testing.B) { b.StopTimer(); run(b, "redir", func(h int) *node { return c.nodes[1-h] }) })
}
