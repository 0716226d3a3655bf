package bench

import "slices"

// Fairness says how evenly loss fell on the consultations: under overload
// an average can look tolerable while one consultation starves. Each
// consultation's loss is over all its streams (both participants, both
// kinds); the worst is named by its pseudonymous consultation id.
type Fairness struct {
	Consultations int    `json:"consultations"` // with media received
	Worst         string `json:"worst_consultation,omitempty"`
	// WorstFraction is the worst consultation's loss over all its packets,
	// WorstByKind the same consultation's loss by kind.
	WorstFraction float64            `json:"worst_fraction"`
	WorstByKind   map[string]float64 `json:"worst_by_kind,omitempty"`
	// P95Fraction is the 95th percentile of the consultations' loss.
	P95Fraction float64 `json:"p95_fraction"`
	// Over1Percent counts consultations that lost more than 1 %.
	Over1Percent int `json:"over_1_percent"`
}

// fairness computes Fairness from the consultations' streams.
func fairness(calls []*callResult) Fairness {
	var f Fairness
	var fractions []float64
	for _, r := range calls {
		if r == nil {
			continue
		}
		var exp, lost uint64
		kexp, klost := map[string]uint64{}, map[string]uint64{}
		for _, s := range r.streams {
			l := s.expected - min(s.received, s.expected)
			exp, lost = exp+s.expected, lost+l
			kexp[s.kind] += s.expected
			klost[s.kind] += l
		}
		if exp == 0 {
			continue
		}
		frac := float64(lost) / float64(exp)
		fractions = append(fractions, frac)
		if frac > 0.01 {
			f.Over1Percent++
		}
		if f.Worst == "" || frac > f.WorstFraction {
			f.Worst, f.WorstFraction = r.cid, frac
			f.WorstByKind = map[string]float64{}
			for k, e := range kexp {
				if e > 0 {
					f.WorstByKind[k] = float64(klost[k]) / float64(e)
				}
			}
		}
	}
	f.Consultations = len(fractions)
	if len(fractions) > 0 {
		slices.Sort(fractions)
		f.P95Fraction = fractions[(len(fractions)*95+99)/100-1]
	}
	return f
}
