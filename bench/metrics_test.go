package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestGoroutinesPerConsultation: the server's go_goroutines is read from
// /metrics and reported per consultation over the baseline, like RSS (here
// without a steady window, so where the 10 consultations were up).
func TestGoroutinesPerConsultation(t *testing.T) {
	scrape := func(goroutines, rss, active string) sample {
		s, err := parseMetrics("process_cpu_seconds_total 1\nprocess_resident_memory_bytes " + rss +
			"\nmedcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\ngo_goroutines " + goroutines +
			"\nmedcall_consultations_active " + active + "\n")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := scrape("30", "1e6", "0")
	load := scrape("880", "5e6", "10")
	if base.Goroutines != 30 || load.Goroutines != 880 {
		t.Fatalf("goroutines read %v and %v, want 30 and 880", base.Goroutines, load.Goroutines)
	}
	load.At = time.Now()
	f := serverFigures([]sample{base, load}, base, nil, time.Time{}, 10)
	if f.GoroutinesPerConsultation != 85 {
		t.Errorf("goroutines per consultation %v, want 85", f.GoroutinesPerConsultation)
	}
	if f.RSSPerConsultationBytes != 4e5 {
		t.Errorf("RSS per consultation %v, want 400000", f.RSSPerConsultationBytes)
	}
}

// TestSocketDropsOverTheRun: the server's UDP socket drops are read from
// /metrics and reported as what the run added to them.
func TestSocketDropsOverTheRun(t *testing.T) {
	scrape := func(drops string) sample {
		s, err := parseMetrics("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1e6\n" +
			"medcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\nmedcall_udp_receive_drops_total " + drops + "\n")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base, end := scrape("120"), scrape("4120")
	end.At = time.Now()
	if f := serverFigures([]sample{base, end}, base, nil, time.Time{}, 10); f.SocketDrops == nil || *f.SocketDrops != 4000 {
		t.Errorf("socket drops over the run %v, want 4000", f.SocketDrops)
	}
}

// TestSocketDropsNotCountedAreNotZero: a server that does not export the
// counter (no --udp-port) has its drops reported as not counted, never as
// none, in the JSON (null) and in the table.
func TestSocketDropsNotCountedAreNotZero(t *testing.T) {
	s, err := parseMetrics("process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1e6\nmedcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\n")
	if err != nil {
		t.Fatal(err)
	}
	end := s
	end.At = time.Now()
	r := &Result{Server: serverFigures([]sample{s, end}, s, nil, time.Time{}, 10)}
	if r.Server.SocketDrops != nil {
		t.Fatalf("socket drops %v from a server without the counter, want none", *r.Server.SocketDrops)
	}
	j, err := json.Marshal(r.Server)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"udp_socket_drops":null`) {
		t.Errorf("JSON %s: want udp_socket_drops null", j)
	}
	for _, f := range r.Figures() {
		if f.Name == "UDP socket drops" {
			t.Errorf("figure %+v listed for a server without the counter", f)
		}
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "UDP socket drops not counted") {
		t.Errorf("table does not say the drops were not counted:\n%s", b.String())
	}
}

// TestSchedulerLatencyOverTheWindow: the server's scheduler histogram is
// read from /metrics and its quantiles taken over what the window added,
// not over the server's whole life.
func TestSchedulerLatencyOverTheWindow(t *testing.T) {
	scrape := func(counts ...int) sample {
		text := "process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1e6\nmedcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\n"
		for i, le := range []string{"0.0009175039999999999", "0.010485759999999998", "0.11744051199999998", "+Inf"} {
			text += fmt.Sprintf("go_sched_latencies_seconds_bucket{le=%q} %d\n", le, counts[i])
		}
		s, err := parseMetrics(text)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Before: 10,000 quick waits. The run adds 900 quick ones, 80 up to
	// 10 ms, 15 up to 117 ms and 5 longer.
	base, end := scrape(10000, 10000, 10000, 10000), scrape(10900, 10980, 10995, 11000)
	end.At = base.At.Add(10 * time.Second)
	f := serverFigures([]sample{base, end}, base, nil, time.Time{}, 10)
	if f.SchedP50 != 0.0009175039999999999 || f.SchedP99 != 0.11744051199999998 {
		t.Errorf("p50 %v p99 %v; want the 0.92 ms and 117 ms bounds", f.SchedP50, f.SchedP99)
	}
	if math.Abs(f.SchedOver10ms-0.02) > 1e-9 {
		t.Errorf("share over 10 ms %v, want 0.02", f.SchedOver10ms)
	}
	// A server that restarted within the window: its counts start again,
	// and what it counted since is what the window shows.
	restarted := scrape(90, 98, 100, 100)
	restarted.At = end.At.Add(time.Second)
	if got := shareOver(end.Sched, restarted.Sched, 0.0105); math.Abs(got-0.02) > 1e-9 {
		t.Errorf("after a restart: share over 10 ms %v, want 0.02", got)
	}
	// A server without the histogram reports zeros, not an error.
	if s := scrape(0, 0, 0, 0); quantileBetween(nil, s.Sched, 0.99) != 0 {
		t.Error("an empty histogram gave a quantile")
	}
}

// TestUDPQueueDelayOverTheWindow: the server's UDP queue histogram is read
// like the scheduler's, and is absent from the figures when the server has
// none (no --udp-port).
func TestUDPQueueDelayOverTheWindow(t *testing.T) {
	scrape := func(counts ...int) sample {
		text := "process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1e6\nmedcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\n"
		for i, le := range []string{"0.001", "0.1", "1", "+Inf"} {
			if counts != nil {
				text += fmt.Sprintf("medcall_udp_queue_delay_seconds_bucket{le=%q} %d\n", le, counts[i])
			}
		}
		s, err := parseMetrics(text)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The run adds 97 quick waits, 1 up to 100 ms and 2 up to a second.
	base, end := scrape(50, 50, 50, 50), scrape(147, 148, 150, 150)
	end.At = base.At.Add(10 * time.Second)
	f := serverFigures([]sample{base, end}, base, nil, time.Time{}, 10)
	if q := f.QueueDelay; q == nil || q.P50 != 0.001 || q.P99 != 1 || math.Abs(q.Over100ms-0.02) > 1e-9 {
		t.Errorf("queue delay %+v; want p50 1 ms, p99 1 s, 2 %% over 100 ms", q)
	}
	none, none2 := scrape(), scrape()
	none2.At = none.At.Add(10 * time.Second)
	if f := serverFigures([]sample{none, none2}, none, nil, time.Time{}, 10); f.QueueDelay != nil {
		t.Errorf("a server without the histogram: queue delay %+v, want none", f.QueueDelay)
	}
}

// TestForwardDelayByKind: the server's time-in-server histogram is read
// per kind, and a kind the server has no series of is left out.
func TestForwardDelayByKind(t *testing.T) {
	scrape := func(audio, video []int) sample {
		text := "process_cpu_seconds_total 1\nprocess_resident_memory_bytes 1e6\nmedcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\n"
		for i, le := range []string{"0.001", "0.1", "1", "+Inf"} {
			if audio != nil {
				text += fmt.Sprintf("medcall_forward_delay_seconds_bucket{kind=\"audio\",le=%q} %d\n", le, audio[i])
			}
			if video != nil {
				text += fmt.Sprintf("medcall_forward_delay_seconds_bucket{kind=\"video\",le=%q} %d\n", le, video[i])
			}
		}
		s, err := parseMetrics(text)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Audio: 100 quick. Video: 40 quick, 60 up to a second.
	base, end := scrape([]int{0, 0, 0, 0}, []int{0, 0, 0, 0}), scrape([]int{100, 100, 100, 100}, []int{40, 40, 100, 100})
	end.At = base.At.Add(10 * time.Second)
	f := serverFigures([]sample{base, end}, base, nil, time.Time{}, 10)
	a, v := f.ForwardDelay["audio"], f.ForwardDelay["video"]
	if a == nil || a.P50 != 0.001 || a.P99 != 0.001 || a.Over100ms != 0 {
		t.Errorf("audio %+v; want p50 and p99 1 ms, none over 100 ms", a)
	}
	if v == nil || v.P50 != 1 || v.P99 != 1 || math.Abs(v.Over100ms-0.6) > 1e-9 {
		t.Errorf("video %+v; want p50 and p99 1 s, 60 %% over 100 ms", v)
	}
	onlyAudio, onlyAudio2 := scrape([]int{0, 0, 0, 0}, nil), scrape([]int{5, 5, 5, 5}, nil)
	onlyAudio2.At = onlyAudio.At.Add(10 * time.Second)
	f = serverFigures([]sample{onlyAudio, onlyAudio2}, onlyAudio, nil, time.Time{}, 10)
	if _, ok := f.ForwardDelay["video"]; ok || f.ForwardDelay["audio"] == nil {
		t.Errorf("a server with audio only: %+v", f.ForwardDelay)
	}
}
