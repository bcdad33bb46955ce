package process

import (
	"fmt"
	"testing"
	"time"
)

// incident makes a one-node incident detected at start, in site/rule, whose
// triage took triage.
func incident(ind, site, rule string, start time.Time, triage time.Duration) Incident {
	return Merge([]Record{{Indicator: ind, Node: "A", Site: site, Rule: rule, Severity: "high",
		FirstEvent: start.Add(-time.Second), Detected: start, Received: start, Acked: start.Add(triage)}}, 1)[0]
}

func TestSummarizePercentilesAndGroups(t *testing.T) {
	var incs []Incident
	// 100 incidents in paris with triage 1..100 s, 10 in lyon at 1000 s.
	for i := 1; i <= 100; i++ {
		incs = append(incs, incident(fmt.Sprintf("ipv4:198.51.100.%d", i), "paris", "ssh", at(float64(i)), time.Duration(i)*time.Second))
	}
	for i := 1; i <= 10; i++ {
		incs = append(incs, incident(fmt.Sprintf("ipv4:192.0.2.%d", i), "lyon", "web", at(86400+float64(i)), 1000*time.Second))
	}
	// One outside the period.
	incs = append(incs, incident("ipv4:192.0.2.200", "lyon", "web", at(-3600), time.Second))
	s := Summarize(incs, nil, nil, BySite, t0, t0.Add(7*24*time.Hour))
	if s.Incidents != 110 {
		t.Fatalf("%d incidents, want 110", s.Incidents)
	}
	var triage StageStats
	for _, st := range s.Stages {
		if st.Stage == StageTriage {
			triage = st
		}
	}
	// Empirical quantiles of 1..100 then ten 1000s.
	if triage.Count != 110 || triage.P50 != 55 || triage.P90 != 99 || triage.P99 != 1000 {
		t.Errorf("triage %+v, want count 110, p50 55, p90 99, p99 1000", triage)
	}
	if len(s.Groups) != 2 || s.Groups[0].Key != "lyon" || s.Groups[1].Key != "paris" {
		t.Fatalf("groups %+v, want lyon then paris", s.Groups)
	}
	for _, st := range s.Groups[1].Stages {
		if st.Stage == StageTriage && (st.Count != 100 || st.P50 != 50 || st.P99 != 99) {
			t.Errorf("paris triage %+v, want count 100, p50 50, p99 99", st)
		}
	}
	if got := len(s.Samples[StageTriage]); got != 110 {
		t.Errorf("%d triage samples, want 110", got)
	}
	byDay := Summarize(incs, nil, nil, ByDay, t0, t0.Add(7*24*time.Hour))
	if len(byDay.Groups) != 2 || byDay.Groups[0].Key != "2026-11-30" || byDay.Groups[1].Key != "2026-12-01" {
		t.Errorf("day groups %+v", byDay.Groups)
	}
}

func TestSampleKeepsEnds(t *testing.T) {
	v := make([]float64, 10001)
	for i := range v {
		v[i] = float64(i)
	}
	s := sample(v, 5)
	if len(s) != 5 || s[0] != 0 || s[4] != 10000 || s[2] != 5000 {
		t.Errorf("sample %v", s)
	}
}

func TestEvaluateBreaches(t *testing.T) {
	incs := []Incident{
		incident("ipv4:198.51.100.1", "paris", "ssh", at(0), 20*time.Minute), // acked late
		incident("ipv4:198.51.100.2", "paris", "ssh", at(0), 5*time.Minute),  // in time
	}
	open := Merge([]Record{{Indicator: "ipv4:198.51.100.3", Node: "A", Severity: "critical", Detected: at(0)}}, 1)[0]
	low := Merge([]Record{{Indicator: "ipv4:198.51.100.4", Node: "A", Severity: "low", Detected: at(0)}}, 1)[0]
	incs = append(incs, open, low)
	exps := []Expectation{{Name: "ack-high", Severity: "high", Stage: StageTriage, Within: 15 * time.Minute}}
	bs := Evaluate(incs, exps, at(3600))
	if len(bs) != 2 {
		t.Fatalf("breaches %+v, want 2 (late ack, open critical; not the low one)", bs)
	}
	if bs[0].Indicator != "ipv4:198.51.100.1" || bs[0].Open || bs[0].Late != 5*time.Minute {
		t.Errorf("first breach %+v, want 198.51.100.1 closed 5m late", bs[0])
	}
	if bs[1].Indicator != "ipv4:198.51.100.3" || !bs[1].Open || bs[1].Late != 45*time.Minute {
		t.Errorf("second breach %+v, want 198.51.100.3 open 45m late", bs[1])
	}
	s := Summarize(incs, nil, exps, "", t0, at(3600))
	if len(s.BreachesByDay) != 1 || s.BreachesByDay[0].Count != 2 || s.BreachesByDay[0].Day != "2026-11-30" {
		t.Errorf("breaches by day %+v", s.BreachesByDay)
	}
}

func TestConfigValidateNamesFields(t *testing.T) {
	c := DefaultConfig()
	c.Expectations = []Expectation{
		{Name: "ok", Stage: StageTriage, Within: time.Minute},
		{Name: "ok", Severity: "urgent", Stage: "lunch", Within: 0},
	}
	err := c.Validate()
	for _, want := range []string{"expectations[1].name", "expectations[1].severity", "expectations[1].stage", "expectations[1].within"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v lacks %s", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// Percentiles are empirical: a value that was measured, never one
// interpolated between two.
func TestQuantileEmpirical(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{0.5: 5, 0.9: 9, 0.95: 10, 0.99: 10, 0.01: 1} {
		if got := Quantile(v, p); got != want {
			t.Errorf("p%v = %v, want %v", p*100, got, want)
		}
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("empty")
	}
}
