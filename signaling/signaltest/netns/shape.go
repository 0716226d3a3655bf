package netns

import (
	"fmt"
	"regexp"
	"strconv"
)

// Shape limits what leaves the namespace through ifc to kbit kilobits per
// second with a token bucket (tc tbf): a slow link whose buffer holds about
// latencyMs of traffic, beyond which packets are dropped. The kernel's tbf is
// all there is here (no netem); loss, delay and jitter need an Impairer.
func (n *NS) Shape(ifc string, kbit, latencyMs int) {
	n.topo.t.Helper()
	n.Run("tc", "qdisc", "replace", "dev", ifc, "root", "tbf", "rate", strconv.Itoa(kbit)+"kbit",
		"burst", "16kb", "latency", strconv.Itoa(latencyMs)+"ms")
}

// Unshape removes a limit set by Shape.
func (n *NS) Unshape(ifc string) {
	n.topo.t.Helper()
	n.Run("tc", "qdisc", "del", "dev", ifc, "root")
}

// Lose makes the namespace, as a router, drop pct percent of the packets it
// forwards out of ifc and pct percent of those it forwards in from ifc,
// at random (nftables numgen), counting each direction's drops for Lost.
func (n *NS) Lose(ifc string, pct int) {
	n.topo.t.Helper()
	n.Nft(fmt.Sprintf(`table inet loss {
	counter lost_out {}
	counter lost_in {}
	chain lossy {
		type filter hook forward priority filter - 2; policy accept;
		oifname %[1]q numgen random mod 100 < %[2]d counter name "lost_out" drop
		iifname %[1]q numgen random mod 100 < %[2]d counter name "lost_in" drop
	}
}
`, ifc, pct))
}

var counterPackets = regexp.MustCompile(`packets (\d+)`)

// Lost is how many packets Lose dropped: out of its interface (out) and in
// from it (in).
func (n *NS) Lost() (out, in int) {
	n.topo.t.Helper()
	for _, c := range []struct {
		name string
		v    *int
	}{{"lost_out", &out}, {"lost_in", &in}} {
		m := counterPackets.FindStringSubmatch(n.Run("nft", "list", "counter", "inet", "loss", c.name))
		if m == nil {
			n.topo.t.Fatalf("netns %s: no packet count in nft counter %s", n.Name, c.name)
		}
		*c.v, _ = strconv.Atoi(m[1])
	}
	return out, in
}
