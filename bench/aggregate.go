package bench

import (
	"fmt"
	"slices"
	"time"
)

// aggregate folds the consultations' measurements into res.
func aggregate(res *Result, calls []*callResult, checks []recordingCheck) {
	res.Consultations.Planned = len(calls)
	var joins []time.Duration
	upgrades := map[string][]time.Duration{}
	jitter := map[string][]time.Duration{}
	delay := map[string][]time.Duration{}
	res.Loss = map[string]Loss{}
	var pace []float64
	note := func(what string, err error) {
		res.Errors[what]++
		if len(res.ErrorSamples) < maxErrorSamples {
			res.ErrorSamples = append(res.ErrorSamples, err.Error())
		}
	}
	for i, r := range calls {
		if r == nil { // never started: the run's time ran out
			note("not_started", fmt.Errorf("consultation %d: not started before the run's deadline", i))
			continue
		}
		for _, e := range r.errs {
			note(e.stage, fmt.Errorf("%s %s: %w", r.cid, e.stage, e.err))
		}
		joins = append(joins, r.joins...)
		if len(r.joins) == 2 {
			res.Consultations.Joined++
		}
		if r.upgradedBoth {
			res.Consultations.Upgraded++
		}
		if !r.ended.IsZero() {
			res.Consultations.Ended++
		}
		upgrades[r.path] = append(upgrades[r.path], r.upgrades...)
		upgrades["all"] = append(upgrades["all"], r.upgrades...)
		for _, s := range r.streams {
			if s.expected == 0 {
				continue
			}
			l := res.Loss[s.kind]
			l.Streams++
			l.Expected += s.expected
			l.Received += min(s.received, s.expected) // retransmitted duplicates are not negative loss
			l.Lost = l.Expected - l.Received
			l.Fraction = float64(l.Lost) / float64(l.Expected)
			res.Loss[s.kind] = l
			jitter[s.kind] = append(jitter[s.kind], s.jitter)
			delay[s.kind] = append(delay[s.kind], s.delays...)
			if s.kind == "audio" && s.pace > 0 {
				pace = append(pace, s.pace)
			}
		}
		if r.ended.IsZero() || checks == nil {
			continue
		}
		c := checks[i]
		if !res.Params.Record {
			continue
		}
		res.Recordings.Expected++
		switch {
		case c.verified:
			res.Recordings.Stored++
			res.Recordings.Verified++
		case c.stored:
			res.Recordings.Stored++
			res.Recordings.Failed++
			note(stageRecording, c.err)
		case c.timedOut:
			res.Recordings.TimedOut++
			note(stageRecordingTime, c.err)
		case c.err != nil:
			note(stageRecording, c.err)
		}
	}
	var stored []time.Duration
	for _, c := range checks {
		if c.stored {
			stored = append(stored, c.latency)
		}
	}
	res.Recordings.StoreTime = Summarize(stored)
	if len(pace) > 0 {
		res.SendPace.Min = slices.Min(pace)
		for _, p := range pace {
			res.SendPace.Mean += p / float64(len(pace))
		}
	}
	res.Fairness = fairness(calls)
	res.Join = Summarize(joins)
	res.Upgrade = summarizeAll(upgrades)
	res.Jitter = summarizeAll(jitter)
	res.Delay = summarizeAll(delay)
}

func summarizeAll(m map[string][]time.Duration) map[string]Summary {
	out := map[string]Summary{}
	for k, v := range m {
		if len(v) > 0 {
			out[k] = Summarize(v)
		}
	}
	return out
}

// serverFigures computes CPU per forwarded packet and RSS per consultation
// from the server's own samples. The steady window runs from the moment the
// last consultation finished upgrading to the first planned leave; without
// one (the joins and upgrades took longer than the calls), the whole run is
// used and the window says so.
func serverFigures(samples []sample, base sample, calls []*callResult, firstLeave time.Time, up int) ServerFigures {
	var from time.Time
	for _, r := range calls {
		if r != nil && r.upgradeAllDone.After(from) {
			from = r.upgradeAllDone
		}
	}
	f := ServerFigures{Window: "steady"}
	a, b, ok := window(samples, from, firstLeave)
	if !ok || from.IsZero() {
		f.Window = "run"
		if len(samples) < 2 {
			return f
		}
		a, b = samples[0], samples[len(samples)-1]
	}
	f.WindowSeconds = b.At.Sub(a.At).Seconds()
	f.SchedP50 = quantileBetween(a.Sched, b.Sched, 0.5)
	f.SchedP99 = quantileBetween(a.Sched, b.Sched, 0.99)
	f.SchedOver10ms = shareOver(a.Sched, b.Sched, 0.0105)
	f.QueueDelay = delayBetween(a.Queue, b.Queue)
	for _, kind := range []string{"audio", "video"} {
		if d := delayBetween(a.Forward[kind], b.Forward[kind]); d != nil {
			if f.ForwardDelay == nil {
				f.ForwardDelay = map[string]*QueueDelay{}
			}
			f.ForwardDelay[kind] = d
		}
	}
	f.CPUSeconds = b.CPU - a.CPU
	f.PacketsForwarded = b.Forwarded - a.Forwarded
	if f.WindowSeconds > 0 {
		f.PacketsPerSecond = f.PacketsForwarded / f.WindowSeconds
		f.CPUCores = f.CPUSeconds / f.WindowSeconds
	}
	if f.PacketsForwarded > 0 {
		f.CPUMicrosPerPacket = 1e6 * f.CPUSeconds / f.PacketsForwarded
	}
	f.RSSBaselineBytes = base.RSS
	f.RSSLoadBytes = b.RSS
	if f.Window == "run" {
		// Without a steady window (the last upgrade came after the first
		// leave), at the run's end most have left: the memory is read where
		// the most were up, per consultation up then.
		b, up = peakLoad(samples)
		f.RSSLoadBytes, f.PeakConsultations = b.RSS, float64(up)
	}
	if up > 0 {
		f.RSSPerConsultationBytes = (b.RSS - base.RSS) / float64(up)
		if b.Goroutines > 0 {
			f.GoroutinesPerConsultation = (b.Goroutines - base.Goroutines) / float64(up)
		}
	}
	if len(samples) > 0 {
		last := samples[len(samples)-1]
		f.DroppedWriteErrors = last.DroppedWrite - base.DroppedWrite
		f.RecorderOverflows = last.RecorderOverflows - base.RecorderOverflows
		if last.HasSocketDrops && base.HasSocketDrops {
			d := last.SocketDrops - base.SocketDrops
			f.SocketDrops = &d
		}
	}
	return f
}

// peakLoad is the sample with the most consultations up
// (medcall_consultations_active), and that count; 0 when none counted any.
func peakLoad(samples []sample) (sample, int) {
	var peak sample
	for _, s := range samples {
		if s.Active > peak.Active {
			peak = s
		}
	}
	return peak, int(peak.Active)
}

// delayBetween summarizes a delay histogram from a to b; nil when it
// counted nothing.
func delayBetween(a, b []bucket) *QueueDelay {
	if _, _, ok := windowCounts(a, b); !ok {
		return nil
	}
	return &QueueDelay{
		P50: quantileBetween(a, b, 0.5), P99: quantileBetween(a, b, 0.99),
		Over100ms: shareOver(a, b, 0.1),
	}
}
