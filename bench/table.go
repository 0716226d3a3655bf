package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the result as a readable table: distributions as rows
// of count and percentiles, then loss, the server's figures and recordings.
func (r *Result) WriteTable(w io.Writer) error {
	p := r.Params
	fmt.Fprintf(w, "medcall bench: n=%d join-rate=%.3g/s duration=%v upgrade-after=%v downgrade-after=%v path=%s rec=%v (ran %.1f s)\n",
		p.N, p.JoinRate, p.Duration, p.UpgradeAfter, p.DowngradeAfter, p.Path, p.Record, r.ElapsedSeconds)
	c := r.Consultations
	fmt.Fprintf(w, "consultations: planned %d, joined %d, upgraded %d, ended %d; errors %s\n\n",
		c.Planned, c.Joined, c.Upgraded, c.Ended, errorList(r.Errors))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// tabwriter right-aligns every cell; padding the names makes their
	// column read left-aligned.
	const nameWidth = 38
	fmt.Fprintf(tw, "%-*s\tcount\tp50\tp95\tp99\tmax\t\n", nameWidth, "(ms)")
	dist := func(name string, s Summary) {
		fmt.Fprintf(tw, "%-*s\t%d\t%s\t%s\t%s\t%s\t\n", nameWidth, name, s.Count, ms(s.P50), ms(s.P95), ms(s.P99), ms(s.Max))
	}
	dist("join (token to connected)", r.Join)
	for _, k := range sortedKeys(r.Upgrade) {
		dist("upgrade to keyframe, "+k, r.Upgrade[k])
	}
	for _, k := range sortedKeys(r.Delay) {
		dist(k+" forwarding delay", r.Delay[k])
	}
	for _, k := range sortedKeys(r.Jitter) {
		dist(k+" jitter (per stream)", r.Jitter[k])
	}
	if p.Record {
		dist("call end to recording stored", r.Recordings.StoreTime)
	}
	fmt.Fprintf(tw, "\t\t\t\t\t\t\n%-*s\tstreams\texpected\treceived\tlost\tloss %%\t\n", nameWidth, "(packets)")
	for _, k := range sortedKeys(r.Loss) {
		l := r.Loss[k]
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%d\t%d\t%.3f\t\n", nameWidth, k, l.Streams, l.Expected, l.Received, l.Lost, 100*l.Fraction)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if fr := r.Fairness; fr.Consultations > 0 {
		fmt.Fprintf(w, "loss per consultation: worst %s %.3f %%%s, p95 %.3f %%, %d of %d over 1 %%\n",
			fr.Worst, 100*fr.WorstFraction, kindList(fr.WorstByKind), 100*fr.P95Fraction, fr.Over1Percent, fr.Consultations)
	}
	writeSpread(w, r.Nodes)
	s := r.Server
	fmt.Fprintf(w, "\nserver (its own /metrics, %s window of %.1f s):\n", s.Window, s.WindowSeconds)
	fmt.Fprintf(w, "  CPU per forwarded packet  %.1f µs  (%.2f cores busy, %.0f packets forwarded/s)\n", s.CPUMicrosPerPacket, s.CPUCores, s.PacketsPerSecond)
	writeMemory(w, s)
	drops := "not counted (the server reads no single --udp-port socket)"
	if s.SocketDrops != nil {
		drops = fmt.Sprintf("%.0f", *s.SocketDrops)
	}
	fmt.Fprintf(w, "  write-error drops %.0f, recorder queue overflows %.0f, UDP socket drops %s, scrape errors %d\n", s.DroppedWriteErrors, s.RecorderOverflows, drops, s.ScrapeErrors)
	fmt.Fprintf(w, "  waits for a CPU (go_sched_latencies_seconds, by bucket bound): p50 %.2g ms, p99 %.3g ms, %.2f %% over 10 ms\n",
		1000*s.SchedP50, 1000*s.SchedP99, 100*s.SchedOver10ms)
	if q := s.QueueDelay; q != nil {
		fmt.Fprintf(w, "  waits in the UDP port's queue (medcall_udp_queue_delay_seconds, by bucket bound): p50 %.3g ms, p99 %.3g ms, %.2f %% over 100 ms\n",
			1000*q.P50, 1000*q.P99, 100*q.Over100ms)
	}
	for _, kind := range []string{"audio", "video"} {
		if q := s.ForwardDelay[kind]; q != nil {
			fmt.Fprintf(w, "  %s's time in the server (medcall_forward_delay_seconds, by bucket bound): p50 %.3g ms, p99 %.3g ms, %.2f %% over 100 ms\n",
				kind, 1000*q.P50, 1000*q.P99, 100*q.Over100ms)
		}
	}
	if r.ElapsedSeconds > 0 {
		fmt.Fprintf(w, "bench process: %.1f CPU s over the run (%.2f cores); send pace %.3f of real time (lowest sender %.3f)\n",
			r.BenchCPUSeconds, r.BenchCPUSeconds/r.ElapsedSeconds, r.SendPace.Mean, r.SendPace.Min)
	}
	if p.Record {
		rec := r.Recordings
		fmt.Fprintf(w, "recordings: expected %d, stored %d, verified %d, failed %d, timed out %d\n",
			rec.Expected, rec.Stored, rec.Verified, rec.Failed, rec.TimedOut)
		if rec.Note != "" {
			fmt.Fprintln(w, "  "+rec.Note)
		}
	}
	if s.Profile != "" {
		fmt.Fprintln(w, "server CPU profile:", s.Profile)
	}
	for _, e := range r.ErrorSamples {
		fmt.Fprintln(w, "error:", e)
	}
	return nil
}

// kindList reads " (audio 1.000 %, video 0.000 %)" for a loss by kind.
func kindList(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %.3f %%", k, 100*m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func ms(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func errorList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e12 && v > -1e12:
		return fmt.Sprintf("%d", int64(v))
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// Compare prints a and b side by side with b/a for every figure either has.
func Compare(w io.Writer, a, b *Result, nameA, nameB string) error {
	fb := map[string]float64{}
	for _, f := range b.Figures() {
		fb[f.Section+"/"+f.Name] = f.Value
	}
	seen := map[string]bool{}
	width := 0 // pad names so they read left-aligned in a right-aligned table
	for _, f := range append(a.Figures(), b.Figures()...) {
		width = max(width, len(f.Section)+len(f.Name)+len(f.Unit)+5)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\t%s\t%s\tb/a\t\n", width, "figure", nameA, nameB)
	row := func(name, unit string, va, vb float64, hasA, hasB bool) {
		sa, sb, ratio := "-", "-", "-"
		if hasA {
			sa = formatValue(va)
		}
		if hasB {
			sb = formatValue(vb)
		}
		if hasA && hasB && va != 0 {
			ratio = fmt.Sprintf("%.2f", vb/va)
		} else if hasA && hasB && vb == 0 {
			ratio = "="
		}
		if unit != "" {
			name += " (" + unit + ")"
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t\n", width, name, sa, sb, ratio)
	}
	for _, f := range a.Figures() {
		k := f.Section + "/" + f.Name
		seen[k] = true
		vb, ok := fb[k]
		row(f.Section+": "+f.Name, f.Unit, f.Value, vb, true, ok)
	}
	for _, f := range b.Figures() {
		if !seen[f.Section+"/"+f.Name] {
			row(f.Section+": "+f.Name, f.Unit, 0, f.Value, false, true)
		}
	}
	return tw.Flush()
}

// writeMemory prints RSS and goroutines per consultation, and where they
// were read when the run had no steady window.
func writeMemory(w io.Writer, s ServerFigures) {
	at, when := fmt.Sprintf("%.1f MiB at load,", s.RSSLoadBytes/(1<<20)), ""
	if s.Window == "run" {
		fmt.Fprintf(w, "  no steady window (the last upgrade came after the first leave): CPU is over the whole run; lengthen --duration for one\n")
		if s.PeakConsultations == 0 {
			fmt.Fprintf(w, "  RSS and goroutines per consultation not known (the server reported no consultations up)\n")
			return
		}
		at = fmt.Sprintf("%.1f MiB with %.0f consultations up, the run's most;", s.RSSLoadBytes/(1<<20), s.PeakConsultations)
		when = "  (at the same moment)"
	}
	fmt.Fprintf(w, "  RSS per consultation      %.0f KiB  (%s %.1f MiB before the first join)\n",
		s.RSSPerConsultationBytes/(1<<10), at, s.RSSBaselineBytes/(1<<20))
	fmt.Fprintf(w, "  goroutines per consultation %.1f%s\n", s.GoroutinesPerConsultation, when)
}
