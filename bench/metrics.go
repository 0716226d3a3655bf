package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
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
	// Active is medcall_consultations_active, the consultations with a
	// participant; 0 when the server does not export it.
	Active    float64
	Forwarded float64 // sum of medcall_rtp_packets_forwarded_total over kinds
	Received  float64 // sum of medcall_rtp_packets_received_total over kinds
	// DroppedWrite counts packets the SFU could not hand to a subscriber's transport.
	DroppedWrite float64
	// RecorderOverflows counts packets the recorder queues dropped.
	RecorderOverflows float64
	// SocketDrops counts datagrams the kernel dropped on the server's UDP
	// port (medcall_udp_receive_drops_total), when HasSocketDrops: the
	// server exports it only when it reads one --udp-port socket.
	SocketDrops    float64
	HasSocketDrops bool
	// Sched is the server's go_sched_latencies_seconds histogram (how long
	// its runnable goroutines waited for a CPU), cumulative, by upper bound;
	// nil when it has none.
	Sched []bucket
	// Queue is the server's medcall_udp_queue_delay_seconds histogram (how
	// long datagrams waited in its UDP port's kernel queue), likewise; nil
	// when it has none.
	Queue []bucket
	// Forward is the server's medcall_forward_delay_seconds histogram (how
	// long the own receive path's packets spent in the server), likewise,
	// by kind; nil when it has none.
	Forward map[string][]bucket
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
		case "medcall_consultations_active":
			s.Active = v
		case "medcall_rtp_packets_forwarded_total":
			s.Forwarded += v
		case "medcall_rtp_packets_received_total":
			s.Received += v
		case "medcall_udp_receive_drops_total":
			s.SocketDrops += v
			s.HasSocketDrops = true
		case "go_sched_latencies_seconds_bucket":
			s.Sched = appendBucket(s.Sched, line[:i], v)
		case "medcall_udp_queue_delay_seconds_bucket":
			s.Queue = appendBucket(s.Queue, line[:i], v)
		case "medcall_forward_delay_seconds_bucket":
			if kind, ok := labelValue(line[:i], "kind"); ok {
				if s.Forward == nil {
					s.Forward = map[string][]bucket{}
				}
				s.Forward[kind] = appendBucket(s.Forward[kind], line[:i], v)
			}
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

// appendBucket adds the bucket series (name{...,le="0.5"}) counted n.
func appendBucket(bs []bucket, series string, n float64) []bucket {
	if le, ok := labelValue(series, "le"); ok {
		if ub, err := strconv.ParseFloat(le, 64); err == nil {
			return append(bs, bucket{le: ub, n: n})
		}
	}
	return bs
}

// labelValue is the value of label in a series like name{a="x",le="0.5"}.
func labelValue(series, label string) (string, bool) {
	_, rest, ok := strings.Cut(series, label+`="`)
	if !ok {
		return "", false
	}
	v, _, ok := strings.Cut(rest, `"`)
	return v, ok
}

// bucket is one bucket of a cumulative Prometheus histogram.
type bucket struct{ le, n float64 }

// windowCounts is what a histogram counted from a to b (two scrapes of the
// same series; a nil a is the server's start), by bucket, cumulative, and
// the total; ok is false when nothing was counted or the scrapes differ.
func windowCounts(a, b []bucket) (counts []float64, total float64, ok bool) {
	if len(b) == 0 || (len(a) != 0 && len(a) != len(b)) {
		return nil, 0, false
	}
	for i := range a {
		if b[i].n < a[i].n {
			a = nil // the server restarted in between: what b counted is all there is
			break
		}
	}
	counts = make([]float64, len(b))
	for i := range b {
		counts[i] = b[i].n
		if len(a) != 0 {
			counts[i] -= a[i].n
		}
	}
	total = counts[len(counts)-1] // the +Inf bucket counts everything
	return counts, total, total > 0
}

// quantileBetween is the q-quantile of what a histogram counted from a to
// b: the upper bound of the bucket it falls in (the lower one of +Inf); 0
// when nothing was counted.
func quantileBetween(a, b []bucket, q float64) float64 {
	counts, total, ok := windowCounts(a, b)
	if !ok {
		return 0
	}
	for i, c := range counts {
		if c >= q*total {
			if math.IsInf(b[i].le, 1) && i > 0 {
				return b[i-1].le
			}
			return b[i].le
		}
	}
	return 0
}

// shareOver is the share of what a histogram counted from a to b that fell
// above limit, judged at the largest bucket bound not above limit.
func shareOver(a, b []bucket, limit float64) float64 {
	counts, total, ok := windowCounts(a, b)
	if !ok {
		return 0
	}
	under := 0.0
	for i, c := range counts {
		if b[i].le <= limit {
			under = c
		}
	}
	return 1 - under/total
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
