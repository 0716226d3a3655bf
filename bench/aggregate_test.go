package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestMemoryWithoutASteadyWindow: when the run has no steady window (the
// last upgrade came after the first leave: N large for the duration), RSS and goroutines per consultation
// are read where the most were up, over how many were up then, not at the
// run's end over every consultation the run had (most of which had left):
// at N=125 and 30 s that printed 3.6 goroutines per consultation.
func TestMemoryWithoutASteadyWindow(t *testing.T) {
	at := time.Unix(1000, 0)
	s := func(sec int, rss, goroutines, active float64) sample {
		return sample{At: at.Add(time.Duration(sec) * time.Second), RSS: rss, Goroutines: goroutines, Active: active, CPU: float64(sec), Forwarded: float64(1000 * sec)}
	}
	base := s(0, 20e6, 40, 0)
	samples := []sample{base, s(10, 60e6, 540, 50), s(20, 100e6, 1040, 100), s(30, 90e6, 840, 80), s(40, 30e6, 50, 0)}
	f := serverFigures(samples, base, nil, time.Time{}, 125)
	if f.Window != "run" {
		t.Fatalf("window %q, want run", f.Window)
	}
	if f.PeakConsultations != 100 || f.RSSPerConsultationBytes != 8e5 || f.GoroutinesPerConsultation != 10 {
		t.Errorf("peak %v consultations, RSS per consultation %v, goroutines %v; want 100, 800000, 10",
			f.PeakConsultations, f.RSSPerConsultationBytes, f.GoroutinesPerConsultation)
	}
	if f.CPUMicrosPerPacket != 1000 {
		t.Errorf("CPU per packet %v µs over the run, want 1000", f.CPUMicrosPerPacket)
	}
	var out bytes.Buffer
	writeMemory(&out, f)
	for _, want := range []string{"no steady window", "781 KiB", "with 100 consultations up, the run's most", "goroutines per consultation 10.0  (at the same moment)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table says\n%s\nwithout %q", out.String(), want)
		}
	}

	// A server that reports no consultations up: no figure, and why.
	for i := range samples {
		samples[i].Active = 0
	}
	f = serverFigures(samples, base, nil, time.Time{}, 125)
	out.Reset()
	writeMemory(&out, f)
	if f.RSSPerConsultationBytes != 0 || !strings.Contains(out.String(), "not known") {
		t.Errorf("without consultations up: RSS per consultation %v, table\n%s", f.RSSPerConsultationBytes, out.String())
	}
}
