package cluster

// Ended is how many consultations n has ended and still remembers
// (Node.lose), for tests.
func Ended(n *Node) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.ended)
}
