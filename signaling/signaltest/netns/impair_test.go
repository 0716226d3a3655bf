package netns_test

import (
	"encoding/binary"
	"math"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// impairedPair is two hosts with a router between them that impairs what
// crosses towards and from the first: a (10.13.1.2) -- r -- b (10.13.2.2).
// It returns a UDP socket on each host, b's echoing every datagram back.
func impairedPair(t *testing.T, up, down netns.Impairment) (im *netns.Impairer, a *net.UDPConn, bAddr *net.UDPAddr) {
	t.Helper()
	tp := netns.New(t, "h13net-imp-")
	na, r, nb := tp.Namespace("a"), tp.Namespace("r"), tp.Namespace("b")
	tp.Link(na, "eth0", "10.13.1.2/24", r, "ta", "10.13.1.1/24")
	tp.Link(r, "tb", "10.13.2.1/24", nb, "eth0", "10.13.2.2/24")
	na.Route("default", "10.13.1.1")
	nb.Route("default", "10.13.2.1")
	r.Forward()
	im = r.Impair("ta", up, down)
	echo := nb.ListenUDP("10.13.2.2:7000")
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDP(buf[:n], from)
		}
	}()
	return im, na.ListenUDP("10.13.1.2:0"), echo.LocalAddr().(*net.UDPAddr)
}

// probe sends count datagrams of size bytes, every interval, to the echo at
// to, and returns the round trip of each one that came back (by sequence
// number) and the sequence numbers in the order they came back.
func probe(t *testing.T, c *net.UDPConn, to *net.UDPAddr, count, size int, interval time.Duration) (rtt map[int]time.Duration, order []int) {
	t.Helper()
	start := time.Now()
	go func() {
		b := make([]byte, size)
		for i := range count {
			binary.BigEndian.PutUint32(b, uint32(i))
			binary.BigEndian.PutUint64(b[4:], uint64(time.Since(start)))
			if _, err := c.WriteToUDP(b, to); err != nil {
				return
			}
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * interval)))
		}
	}()
	rtt = map[int]time.Duration{}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(start.Add(time.Duration(count)*interval + 2*time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return rtt, order
		}
		if n < 12 {
			continue
		}
		seq := int(binary.BigEndian.Uint32(buf))
		rtt[seq] = time.Since(start) - time.Duration(binary.BigEndian.Uint64(buf[4:]))
		order = append(order, seq)
	}
}

// TestImpairDelayAndJitter: 40 ms one way and 60 ± 20 ms the other make
// round trips of 100 ms spread uniformly over ±20 ms (the middle half
// within 20 ms), never shorter than 80 ms, with no packet lost and none
// out of order.
func TestImpairDelayAndJitter(t *testing.T) {
	_, a, b := impairedPair(t, netns.Impairment{Delay: 40 * time.Millisecond},
		netns.Impairment{Delay: 60 * time.Millisecond, Jitter: 20 * time.Millisecond})
	const count = 100
	rtt, order := probe(t, a, b, count, 200, 40*time.Millisecond)
	if len(rtt) != count {
		t.Fatalf("%d of %d probes came back; the impairment loses nothing", len(rtt), count)
	}
	if !slices.IsSorted(order) {
		t.Errorf("probes came back out of order: %v", order)
	}
	var ms []float64
	for _, d := range rtt {
		ms = append(ms, float64(d)/float64(time.Millisecond))
	}
	mean, sd := meanSD(ms)
	slices.Sort(ms)
	t.Logf("round trip: mean %.1f ms, sd %.1f ms, min %.1f, median %.1f, max %.1f", mean, sd, ms[0], ms[len(ms)/2], ms[len(ms)-1])
	if ms[0] < 80 {
		t.Errorf("a round trip of %.1f ms; the delays allow no less than 80 ms", ms[0])
	}
	if math.Abs(mean-100) > 8 {
		t.Errorf("mean round trip %.1f ms, want 100 ± 8 ms", mean)
	}
	// The spread is judged by the interquartile range: ±20 ms of uniform
	// jitter puts the middle half of the round trips within 20 ms, whatever
	// one probe the loaded machine's scheduler held back (an outlier the
	// impairer did not make, which the standard deviation would count).
	if iqr := ms[3*len(ms)/4] - ms[len(ms)/4]; iqr < 14 || iqr > 28 {
		t.Errorf("the middle half of the round trips spans %.1f ms (sd %.1f), want about 20 ms (14 to 28) from ±20 ms of jitter", iqr, sd)
	}
}

// TestImpairLossAndRate: 10% loss towards b loses about a tenth of the
// probes (2000 probes: 10 ± 3 %), as the impairer's own count says; a
// 1 Mbit/s limit towards a delivers a 2 Mbit/s stream at about 1 Mbit/s
// and drops the rest once the queue is full.
func TestImpairLossAndRate(t *testing.T) {
	im, a, b := impairedPair(t, netns.Impairment{Loss: 0.1}, netns.Impairment{})
	const count = 2000
	rtt, _ := probe(t, a, b, count, 100, time.Millisecond)
	up, down := im.Stats()
	lost := 1 - float64(len(rtt))/count
	t.Logf("10%% loss: %d of %d came back (%.1f%% lost); impairer up %+v, down %+v", len(rtt), count, 100*lost, up, down)
	if lost < 0.07 || lost > 0.13 {
		t.Errorf("%.1f%% of the probes were lost, want 10 ± 3 %%", 100*lost)
	}
	if up.Lost != count-len(rtt) {
		t.Errorf("the impairer counted %d lost, but %d probes did not come back", up.Lost, count-len(rtt))
	}

	// 1000-byte probes every 4 ms are 2 Mbit/s each way; the limit is on
	// the way back, so what returns is what the 1 Mbit/s link delivered.
	im.Set(netns.Impairment{}, netns.Impairment{Rate: 1_000_000, Queue: 100 * time.Millisecond})
	const n, size, every = 1000, 1000, 4 * time.Millisecond
	rtt, _ = probe(t, a, b, n, size, every)
	_, down = im.Stats()
	kbps := float64(len(rtt)*(size+28)*8) / (float64(n) * every.Seconds()) / 1000
	t.Logf("1 Mbit/s limit: %d of %d came back, %.0f kbit/s of IP; impairer down %+v", len(rtt), n, kbps, down)
	if kbps < 900 || kbps > 1100 {
		t.Errorf("the limited link delivered %.0f kbit/s, want 1000 ± 100", kbps)
	}
	if down.Dropped == 0 {
		t.Error("a link fed twice its rate dropped nothing")
	}
	// With its queue full, a packet waits the queue's length: the round
	// trip is about 100 ms, not the seconds an unbounded queue would build.
	var all []time.Duration
	for _, d := range rtt {
		all = append(all, d)
	}
	slices.Sort(all)
	med := all[len(all)/2]
	t.Logf("round trips through the full queue: median %v, longest %v", med, all[len(all)-1])
	if med < 85*time.Millisecond || med > 120*time.Millisecond {
		t.Errorf("median round trip %v through a link whose queue holds 100 ms, want 85 to 120 ms", med)
	}
}

func meanSD(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}
