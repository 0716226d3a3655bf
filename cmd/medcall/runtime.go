package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is the garbage collector's target unless GOGC says otherwise:
// the heap may grow to 1.5× what is live rather than Go's default 2×. Most
// of a consultation's memory is long-lived buffers (NACK history, recorder
// queues), and the server allocates little per packet, so collecting more
// often costs little CPU (about 5 % more of it in GC at N=50) and keeps the
// heap near 1.5× what is live instead of 2× (see README, Performance).
const gcPercent = 50

// tuneGC applies gcPercent when the operator has not set GOGC.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
