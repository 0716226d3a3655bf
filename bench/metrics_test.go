package bench

import (
	"testing"
	"time"
)

// TestGoroutinesPerConsultation: the server's go_goroutines is read from
// /metrics and reported per consultation over the baseline, like RSS.
func TestGoroutinesPerConsultation(t *testing.T) {
	scrape := func(goroutines, rss string) sample {
		s, err := parseMetrics("process_cpu_seconds_total 1\nprocess_resident_memory_bytes " + rss +
			"\nmedcall_rtp_packets_forwarded_total{kind=\"audio\"} 10\ngo_goroutines " + goroutines + "\n")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := scrape("30", "1e6")
	load := scrape("880", "5e6")
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
	if f := serverFigures([]sample{base, end}, base, nil, time.Time{}, 10); f.SocketDrops != 4000 {
		t.Errorf("socket drops over the run %v, want 4000", f.SocketDrops)
	}
}
