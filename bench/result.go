package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// ResultVersion is the version of the JSON result format.
const ResultVersion = 1

// Result is every figure of a run and the run's parameters; it is the JSON
// file the bench writes and --compare reads.
type Result struct {
	Version        int       `json:"version"`
	Params         Config    `json:"params"`
	Started        time.Time `json:"started"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`

	Consultations Counts         `json:"consultations"`
	Errors        map[string]int `json:"errors"`                  // by stage
	ErrorSamples  []string       `json:"error_samples,omitempty"` // the first few, for diagnosis

	Join    Summary            `json:"join_ms"`    // token in hand to publish connection connected
	Upgrade map[string]Summary `json:"upgrade_ms"` // by path, and "all": upgrade action to first keyframe at the peer
	Loss    map[string]Loss    `json:"loss"`       // by kind
	Jitter  map[string]Summary `json:"jitter_ms"`  // by kind: each stream's RFC 3550 jitter at the end
	Delay   map[string]Summary `json:"delay_ms"`   // by kind: send to receive of each frame's first packet

	// Fairness is how loss fell on the consultations (fairness.go).
	Fairness Fairness `json:"fairness"`

	// SendPace is how close the simulated participants kept to real time
	// (audio packets sent over those due; 1 is real time). Well under 1
	// means the bench machine, not the server, was the limit.
	SendPace Pace `json:"send_pace"`

	Server ServerFigures `json:"server"`
	// BenchCPUSeconds is the bench process's own CPU over the run: on a
	// machine it shares with the server, what the load generator took.
	BenchCPUSeconds float64          `json:"bench_cpu_seconds"`
	Recordings      RecordingFigures `json:"recordings"`
	// Nodes is participants per node joined on (after redirects), with --url
	// listing a cluster's entry nodes.
	Nodes map[string]int `json:"nodes,omitempty"`
}

// Counts are consultations by how far they got.
type Counts struct {
	Planned  int `json:"planned"`
	Joined   int `json:"joined"`   // both participants connected
	Upgraded int `json:"upgraded"` // both participants' video reached the other
	Ended    int `json:"ended"`    // ran to the end and left
}

// Loss is receive-side packet loss of one kind, summed over streams:
// Expected is what the sequence numbers say was sent from each stream's first
// received packet to its highest (RFC 3550 A.3). The SFU closes the gaps it
// makes on purpose (video before a subscriber's first keyframe, while
// downgraded), so those are excluded; every other gap counts.
type Loss struct {
	Streams  int     `json:"streams"`
	Expected uint64  `json:"expected"`
	Received uint64  `json:"received"`
	Lost     uint64  `json:"lost"`
	Fraction float64 `json:"fraction"`
}

// Pace summarizes the audio send pace over the senders.
type Pace struct {
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
}

// ServerFigures are read from the server's own /metrics.
type ServerFigures struct {
	// Window names the span the CPU figures cover: "steady" (every
	// consultation joined and upgraded, none left yet) or "run" when the
	// run had no steady state (too many consultations for the duration).
	Window             string  `json:"window"`
	WindowSeconds      float64 `json:"window_seconds"`
	CPUSeconds         float64 `json:"cpu_seconds"`
	PacketsForwarded   float64 `json:"packets_forwarded"`
	PacketsPerSecond   float64 `json:"packets_forwarded_per_second"`
	CPUMicrosPerPacket float64 `json:"cpu_us_per_forwarded_packet"`
	CPUCores           float64 `json:"cpu_cores"` // CPU seconds per second in the window
	// RSS before the first join and at the end of the window; the difference
	// divided by the consultations up then is the RSS per consultation. In a
	// "run" window, at the moment the most consultations were up
	// (PeakConsultations) instead; none when the server did not say.
	RSSBaselineBytes        float64 `json:"rss_baseline_bytes"`
	RSSLoadBytes            float64 `json:"rss_load_bytes"`
	RSSPerConsultationBytes float64 `json:"rss_per_consultation_bytes"`
	// GoroutinesPerConsultation is the server's goroutines at the same moment
	// less those before the first join, per consultation up then.
	GoroutinesPerConsultation float64 `json:"goroutines_per_consultation"`
	// PeakConsultations, in a "run" window, is how many consultations were
	// up at once at the moment the per-consultation figures are read.
	PeakConsultations  float64 `json:"peak_consultations,omitempty"`
	DroppedWriteErrors float64 `json:"dropped_write_errors"`
	RecorderOverflows  float64 `json:"recorder_queue_overflows"`
	ScrapeErrors       int     `json:"scrape_errors"`
	Profile            string  `json:"profile,omitempty"`
	// SocketDrops is what the kernel dropped on the server's UDP port over
	// the run, its buffer full: lost before the server could read it. Nil
	// (null) when the server does not count it: it was started without
	// --udp-port, or with the port bound on every interface.
	SocketDrops *float64 `json:"udp_socket_drops"`
	// SchedP50 and SchedP99 are quantiles of how long the server's
	// runnable goroutines waited for a CPU over the window (s; the upper
	// bound of the go_sched_latencies_seconds bucket they fall in).
	SchedP50 float64 `json:"scheduler_latency_p50_seconds"`
	SchedP99 float64 `json:"scheduler_latency_p99_seconds"`
	// SchedOver10ms is the share of those waits longer than ~10 ms (the
	// histogram's bound of 10.49 ms).
	SchedOver10ms float64 `json:"scheduler_waits_over_10ms"`
	// QueueDelay is how long datagrams waited in the server's UDP port's
	// kernel queue over the window; nil when the server does not measure it.
	QueueDelay *QueueDelay `json:"udp_queue_delay,omitempty"`
	// ForwardDelay is how long the own receive path's packets spent in the
	// server over the window, the UDP queue included, by kind ("audio",
	// "video"); nil when the server does not measure it.
	ForwardDelay map[string]*QueueDelay `json:"forward_delay,omitempty"`
}

// QueueDelay summarizes one of the server's delay histograms
// (medcall_udp_queue_delay_seconds, medcall_forward_delay_seconds) over a
// window: its quantiles (s, the upper bound of the bucket they fall in)
// and the share of what it timed that took more than 100 ms.
type QueueDelay struct {
	P50       float64 `json:"p50_seconds"`
	P99       float64 `json:"p99_seconds"`
	Over100ms float64 `json:"over_100ms"`
}

// RecordingFigures say what became of the recordings.
type RecordingFigures struct {
	Expected  int     `json:"expected"`
	Stored    int     `json:"stored"`   // manifest present in the store
	Verified  int     `json:"verified"` // manifest signature and WebM digest check out
	Failed    int     `json:"failed"`   // present but not verifying
	TimedOut  int     `json:"timed_out"`
	StoreTime Summary `json:"end_to_stored_ms"` // last leave to manifest present
	Note      string  `json:"note,omitempty"`
}

// Figure is one named number of a result, for the table and for --compare.
type Figure struct {
	Section, Name, Unit string
	Value               float64
}

// Figures lists a result's numbers in a fixed order.
func (r *Result) Figures() []Figure {
	var fs []Figure
	add := func(sec, name, unit string, v float64) { fs = append(fs, Figure{sec, name, unit, v}) }
	sum := func(sec, name string, s Summary) {
		add(sec, name+" count", "", float64(s.Count))
		add(sec, name+" p50", "ms", s.P50)
		add(sec, name+" p95", "ms", s.P95)
		add(sec, name+" p99", "ms", s.P99)
		add(sec, name+" max", "ms", s.Max)
	}
	c := r.Consultations
	add("consultations", "planned", "", float64(c.Planned))
	add("consultations", "joined", "", float64(c.Joined))
	add("consultations", "upgraded", "", float64(c.Upgraded))
	add("consultations", "ended", "", float64(c.Ended))
	for _, k := range sortedKeys(r.Errors) {
		add("consultations", "errors "+k, "", float64(r.Errors[k]))
	}
	sum("join", "join", r.Join)
	for _, p := range sortedKeys(r.Upgrade) {
		sum("upgrade", "upgrade "+p, r.Upgrade[p])
	}
	for _, k := range sortedKeys(r.Loss) {
		add("media", k+" loss", "%", 100*r.Loss[k].Fraction)
		add("media", k+" packets expected", "", float64(r.Loss[k].Expected))
	}
	add("media", "worst consultation loss", "%", 100*r.Fairness.WorstFraction)
	for _, k := range sortedKeys(r.Fairness.WorstByKind) {
		add("media", "worst consultation "+k+" loss", "%", 100*r.Fairness.WorstByKind[k])
	}
	add("media", "consultation loss p95", "%", 100*r.Fairness.P95Fraction)
	add("media", "consultations losing > 1 %", "", float64(r.Fairness.Over1Percent))
	for _, k := range sortedKeys(r.Jitter) {
		add("media", k+" jitter p50", "ms", r.Jitter[k].P50)
		add("media", k+" jitter p95", "ms", r.Jitter[k].P95)
	}
	for _, k := range sortedKeys(r.Delay) {
		add("media", k+" delay p50", "ms", r.Delay[k].P50)
		add("media", k+" delay p95", "ms", r.Delay[k].P95)
		add("media", k+" delay p99", "ms", r.Delay[k].P99)
		add("media", k+" delay max", "ms", r.Delay[k].Max)
	}
	s := r.Server
	add("server", "window ("+s.Window+")", "s", s.WindowSeconds)
	add("server", "packets forwarded/s", "", s.PacketsPerSecond)
	add("server", "CPU per forwarded packet", "µs", s.CPUMicrosPerPacket)
	add("server", "CPU cores busy", "", s.CPUCores)
	add("server", "RSS baseline", "MiB", s.RSSBaselineBytes/(1<<20))
	add("server", "RSS at load", "MiB", s.RSSLoadBytes/(1<<20))
	add("server", "RSS per consultation", "KiB", s.RSSPerConsultationBytes/(1<<10))
	add("server", "goroutines per consultation", "", s.GoroutinesPerConsultation)
	if s.PeakConsultations > 0 {
		add("server", "consultations up at the memory reading", "", s.PeakConsultations)
	}
	add("server", "write-error drops", "", s.DroppedWriteErrors)
	add("server", "recorder queue overflows", "", s.RecorderOverflows)
	if s.SocketDrops != nil {
		add("server", "UDP socket drops", "", *s.SocketDrops)
	}
	add("server", "scheduler latency p50", "ms", 1000*s.SchedP50)
	add("server", "scheduler latency p99", "ms", 1000*s.SchedP99)
	add("server", "scheduler waits over 10 ms", "%", 100*s.SchedOver10ms)
	if q := s.QueueDelay; q != nil {
		add("server", "UDP queue delay p50", "ms", 1000*q.P50)
		add("server", "UDP queue delay p99", "ms", 1000*q.P99)
		add("server", "UDP queue waits over 100 ms", "%", 100*q.Over100ms)
	}
	for _, kind := range []string{"audio", "video"} {
		if q := s.ForwardDelay[kind]; q != nil {
			add("server", kind+" time in server p50", "ms", 1000*q.P50)
			add("server", kind+" time in server p99", "ms", 1000*q.P99)
			add("server", kind+" time in server over 100 ms", "%", 100*q.Over100ms)
		}
	}
	add("bench", "bench CPU", "s", r.BenchCPUSeconds)
	add("bench", "send pace mean", "", r.SendPace.Mean)
	add("bench", "send pace min", "", r.SendPace.Min)
	rec := r.Recordings
	add("recordings", "expected", "", float64(rec.Expected))
	add("recordings", "stored", "", float64(rec.Stored))
	add("recordings", "verified", "", float64(rec.Verified))
	add("recordings", "failed", "", float64(rec.Failed))
	add("recordings", "timed out", "", float64(rec.TimedOut))
	sum("recordings", "end to stored", rec.StoreTime)
	return fs
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// WriteFile writes r as indented JSON.
func (r *Result) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResult reads a result written by WriteFile.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: not a bench result: %w", path, err)
	}
	if r.Version != ResultVersion {
		return nil, fmt.Errorf("%s: result version %d, this bench reads %d", path, r.Version, ResultVersion)
	}
	return &r, nil
}
