package netns

import "strconv"

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
