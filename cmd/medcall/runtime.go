package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is the garbage collector's target unless GOGC says otherwise:
// the heap may grow to 1.5× what is live rather than Go's default 2×. Most
// of a consultation's memory is long-lived buffers (NACK history, recorder
// queues), and the server allocates little per packet, so collecting more
// often costs little CPU and takes about a third off the RSS per
// consultation (see README, Performance).
const gcPercent = 50

// tuneGC applies gcPercent when the operator has not set GOGC.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
