package gcc

import (
	"testing"
	"time"
)

// feedRate gives the calculator n packets of size bytes at rate packets a
// second from start, and returns the last rate it reported and what a
// plain computation over the window gives for the same packets: the
// packets of the last window (at most maxRateHistoryPackets of them), 8 ×
// their bytes over the time from the first to the last.
func feedRate(t *testing.T, c *rateCalculator, start time.Time, n, rate, size int) (got, want int) {
	t.Helper()
	step := time.Second / time.Duration(rate)
	var arrivals []time.Time
	for i := range n {
		at := start.Add(time.Duration(i) * step)
		arrivals = append(arrivals, at)
		c.onAcks([]acknowledgment{{Arrival: at, Size: size}}, func(r int) { got = r })
	}
	last := arrivals[len(arrivals)-1]
	first := len(arrivals) - 1
	for first > 0 && !arrivals[first-1].Before(last.Add(-c.window)) && len(arrivals)-first < maxRateHistoryPackets {
		first--
	}
	bytes := (len(arrivals) - first) * size
	want = int(float64(8*bytes) / last.Sub(arrivals[first]).Seconds())
	return got, want
}

// TestRateHistoryGrowsWithTheWindow: a subscribe connection's rate history
// holds what its 500 ms window holds, not the cap. 65 packets a second
// (audio and 150 kbit/s video) keep about 33, so the ring stays at 64 slots
// where a ring of the cap (500) is 16 KiB per connection; the rate is the
// window's all the same.
func TestRateHistoryGrowsWithTheWindow(t *testing.T) {
	c := newRateCalculator(500 * time.Millisecond)
	got, want := feedRate(t, c, time.Unix(1000, 0), 200, 65, 1000)
	if got != want {
		t.Errorf("rate %d bit/s, want %d", got, want)
	}
	if n := len(c.history.samples); n > 64 {
		t.Errorf("the history has %d slots for a window of %d packets, want at most 64", n, c.history.count)
	}
}

// TestRateHistoryStopsAtTheCap: at 2,000 packets a second the window would
// hold 1,000; the ring grows to the cap and the rate is over the last 500.
func TestRateHistoryStopsAtTheCap(t *testing.T) {
	c := newRateCalculator(500 * time.Millisecond)
	got, want := feedRate(t, c, time.Unix(1000, 0), 3000, 2000, 1200)
	if got != want {
		t.Errorf("rate %d bit/s, want %d", got, want)
	}
	if n, count := len(c.history.samples), c.history.count; n != maxRateHistoryPackets || count != maxRateHistoryPackets {
		t.Errorf("the history has %d slots and %d samples, want %d of each", n, count, maxRateHistoryPackets)
	}
}

// TestRateHistoryKeepsArrivalOrderAcrossGrowth: a late acknowledgment that
// comes as the ring grows, with the ring's start mid-way, is put in its
// place, and the samples stay in arrival order.
func TestRateHistoryKeepsArrivalOrderAcrossGrowth(t *testing.T) {
	c := newRateCalculator(100 * time.Millisecond)
	start := time.Unix(1000, 0)
	// 10 ms apart: the window keeps 11; the first ones are trimmed, so the
	// 16-slot ring's start has moved when it fills.
	var at time.Time
	for i := range 40 {
		at = start.Add(time.Duration(i) * 10 * time.Millisecond)
		c.onAcks([]acknowledgment{{Arrival: at, Size: 100}}, func(int) {})
	}
	// Now 2 ms apart, so the window holds more than 16, then one late.
	for i := 1; i <= 30; i++ {
		c.onAcks([]acknowledgment{{Arrival: at.Add(time.Duration(i) * 2 * time.Millisecond), Size: 100}}, func(int) {})
	}
	c.onAcks([]acknowledgment{{Arrival: at.Add(31 * time.Millisecond), Size: 100}}, func(int) {})
	h := &c.history
	if len(h.samples) <= minRateHistoryPackets {
		t.Fatalf("the ring did not grow: %d slots, %d samples", len(h.samples), h.count)
	}
	sum := 0
	for i := range h.count {
		s := h.samples[(h.start+i)%len(h.samples)]
		sum += s.size
		if i > 0 && s.arrival.Before(h.samples[(h.start+i-1)%len(h.samples)].arrival) {
			t.Fatalf("sample %d of %d is out of arrival order", i, h.count)
		}
	}
	if sum != h.sum {
		t.Errorf("the samples hold %d bytes, the running sum says %d", sum, h.sum)
	}
}
