package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not zero")
	}
	// Few samples: p95 of 3 values is the largest.
	three := []time.Duration{1, 2, 3}
	if Percentile(three, 95) != 3 || Percentile(three, 50) != 2 {
		t.Errorf("p95, p50 of 1,2,3 = %v, %v", Percentile(three, 95), Percentile(three, 50))
	}
}

func TestSummarizeUnsorted(t *testing.T) {
	s := Summarize([]time.Duration{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond})
	if s.Count != 3 || s.P50 != 20 || s.Max != 30 || s.Mean != 20 {
		t.Errorf("summary %+v", s)
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("summary of nothing is not zero")
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"5/s": 5, "5": 5, "30/m": 0.5, "2.5/s": 2.5} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0/s", "-1", "5/d", "x/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func TestProgressLineAndQuietOutsideTerminals(t *testing.T) {
	var p progress
	p.joined.Add(3)
	p.upgraded.Add(2)
	p.errors.Add(1)
	got := p.line(2, 1500*time.Millisecond)
	if want := "joined 3/4  upgraded 2/4  left 0/2  stored 0  errors 1  elapsed 1s "; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if Interactive(&strings.Builder{}) {
		t.Error("a buffer counted as a terminal")
	}
	t.Setenv("CI", "true")
	if Interactive(os.Stderr) {
		t.Error("interactive with CI set")
	}
}
