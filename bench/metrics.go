package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is one scrape of the server's /metrics.
type sample struct {
	At  time.Time
	CPU float64 // process_cpu_seconds_total
	RSS float64 // process_resident_memory_bytes
	// Goroutines is go_goroutines; 0 when the server does not export it.
	Goroutines float64
	Forwarded  float64 // sum of medcall_rtp_packets_forwarded_total over kinds
	Received   float64 // sum of medcall_rtp_packets_received_total over kinds
	// DroppedWrite counts packets the SFU could not hand to a subscriber's transport.
	DroppedWrite float64
	// RecorderOverflows counts packets the recorder queues dropped.
	RecorderOverflows float64
	// SocketDrops counts datagrams the kernel dropped on the server's UDP
	// port (medcall_udp_receive_drops_total; 0 when it has none).
	SocketDrops float64
	// SchedP99 is the server's scheduling latency p99 over its last 250 ms
	// (medcall_scheduler_latency_p99_seconds; 0 when it has none).
	SchedP99 float64
}

// parseMetrics reads the Prometheus text format into the figures the bench
// uses. Series it needs but does not find are an error: the numbers would
// silently be zero.
func parseMetrics(text string) (sample, error) {
	var s sample
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		seen[name] = true
		switch name {
		case "process_cpu_seconds_total":
			s.CPU = v
		case "process_resident_memory_bytes":
			s.RSS = v
		case "go_goroutines":
			s.Goroutines = v
		case "medcall_rtp_packets_forwarded_total":
			s.Forwarded += v
		case "medcall_rtp_packets_received_total":
			s.Received += v
		case "medcall_udp_receive_drops_total":
			s.SocketDrops += v
		case "medcall_scheduler_latency_p99_seconds":
			s.SchedP99 = v
		case "medcall_recorder_queue_overflows_total":
			s.RecorderOverflows += v
		case "medcall_packets_dropped_total":
			if strings.Contains(line[:i], `reason="write_error"`) {
				s.DroppedWrite += v
			}
		}
	}
	for _, want := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "medcall_rtp_packets_forwarded_total"} {
		if !seen[want] {
			return s, fmt.Errorf("bench: /metrics has no %s", want)
		}
	}
	return s, nil
}

// scrape fetches and parses admin/metrics.
func scrape(ctx context.Context, admin string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return sample{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sample{}, fmt.Errorf("bench: scraping %s/metrics: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sample{}, fmt.Errorf("bench: scraping %s/metrics: %s", admin, resp.Status)
	}
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		return sample{}, err
	}
	s, err := parseMetrics(b.String())
	s.At = time.Now()
	return s, err
}

// sampler scrapes the server once a second for the whole run, so the
// steady-state window can be chosen afterwards from what really happened.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	errs    int
	lastErr error
}

func (s *sampler) run(ctx context.Context, admin string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.take(ctx, admin)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) take(ctx context.Context, admin string) {
	sm, err := scrape(ctx, admin)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.errs++
			s.lastErr = err
		}
		return
	}
	s.samples = append(s.samples, sm)
}

func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// window picks the first sample at or after from and the last at or before
// to; ok is false when fewer than two samples lie in [from, to].
func window(samples []sample, from, to time.Time) (a, b sample, ok bool) {
	ai, bi := -1, -1
	for i, s := range samples {
		if ai < 0 && !s.At.Before(from) {
			ai = i
		}
		if !s.At.After(to) {
			bi = i
		}
	}
	if ai < 0 || bi <= ai {
		return sample{}, sample{}, false
	}
	return samples[ai], samples[bi], true
}
