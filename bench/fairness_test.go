package bench

import "testing"

// TestFairnessFindsTheStarvedConsultation: the worst consultation is the
// one with the largest share of its packets lost, whatever its size, and
// its loss is given by kind.
func TestFairnessFindsTheStarvedConsultation(t *testing.T) {
	call := func(cid string, streams ...stream) *callResult { return &callResult{cid: cid, streams: streams} }
	calls := []*callResult{
		call("c-1", stream{kind: "audio", expected: 1000, received: 1000}, stream{kind: "video", expected: 1000, received: 990}),
		nil, // never started
		call("c-2", stream{kind: "audio", expected: 100, received: 80}, stream{kind: "video", expected: 100, received: 100}),
		call("c-3", stream{kind: "audio", expected: 5000, received: 5010}), // duplicates are not negative loss
		call("c-4"),
	}
	f := fairness(calls)
	if f.Consultations != 3 || f.Worst != "c-2" || f.WorstFraction != 0.1 || f.Over1Percent != 1 {
		t.Errorf("got %+v; want 3 consultations, worst c-2 at 0.1, one over 1 %%", f)
	}
	if f.WorstByKind["audio"] != 0.2 || f.WorstByKind["video"] != 0 {
		t.Errorf("worst by kind %v; want audio 0.2, video 0", f.WorstByKind)
	}
	if f.P95Fraction != 0.1 {
		t.Errorf("p95 %v; want 0.1 (the worst of three)", f.P95Fraction)
	}
}
