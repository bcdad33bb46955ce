package process

import (
	"slices"
	"sort"
	"time"

	"gonum.org/v1/gonum/stat"
)

// StageStats are the percentiles of one stage's durations, in seconds.
type StageStats struct {
	Stage Stage   `json:"stage"`
	Count int     `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P90   float64 `json:"p90_seconds"`
	P99   float64 `json:"p99_seconds"`
}

// Group is the stage statistics of the incidents sharing a key (a site,
// a rule, a day).
type Group struct {
	Key    string       `json:"key"`
	Stages []StageStats `json:"stages"`
}

// DayCount is a count on one UTC day (YYYY-MM-DD).
type DayCount struct {
	Day   string `json:"day"`
	Count int    `json:"count"`
}

// Groupings Summarize accepts.
const (
	BySite = "site"
	ByRule = "rule"
	ByDay  = "day"
)

// MaxSamples bounds the durations a Summary carries per stage for charts.
const MaxSamples = 5000

// Summary is the process measured over a period.
type Summary struct {
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Incidents int       `json:"incidents"`
	// Stages are the percentiles over every incident (and every
	// compliance span, for StageCompliance).
	Stages []StageStats `json:"stages"`
	By     string       `json:"by,omitempty"`
	Groups []Group      `json:"groups,omitempty"`
	// Samples are each stage's durations in seconds, sorted (at most
	// MaxSamples, evenly picked), for charts.
	Samples map[Stage][]float64 `json:"samples"`
	// Breaches are the expectations' breaches of these incidents, and
	// BreachesByDay their count per day they fell due.
	Breaches      []Breach   `json:"breaches"`
	BreachesByDay []DayCount `json:"breaches_by_day"`
}

// InPeriod keeps the incidents detected (or, undetected, first seen) at
// or after since and before until.
func InPeriod(incidents []Incident, since, until time.Time) []Incident {
	var out []Incident
	for _, i := range incidents {
		t := i.Detected()
		if t.IsZero() {
			t = i.FirstEvent()
		}
		if t.IsZero() || t.Before(since) || !t.Before(until) {
			continue
		}
		out = append(out, i)
	}
	return out
}

// Summarize measures the incidents and compliance spans of the period
// [since, until), grouped by site, rule or day ("" for no groups), and
// evaluates exps at until.
func Summarize(incidents []Incident, spans []Span, exps []Expectation, by string, since, until time.Time) Summary {
	incidents = InPeriod(incidents, since, until)
	s := Summary{Since: since.UTC(), Until: until.UTC(), Incidents: len(incidents), By: by, Samples: make(map[Stage][]float64)}
	all := durationsOf(incidents)
	for _, sp := range spans {
		if sp.Out.Before(since) || !sp.Out.Before(until) {
			continue
		}
		all[StageCompliance] = append(all[StageCompliance], sp.Duration(until).Seconds())
	}
	s.Stages = statsOf(all, AllStages)
	for st, v := range all {
		s.Samples[st] = sample(v, MaxSamples)
	}
	if by != "" {
		groups := make(map[string][]Incident)
		for _, i := range incidents {
			groups[keyOf(i, by)] = append(groups[keyOf(i, by)], i)
		}
		keys := make([]string, 0, len(groups))
		for k := range groups {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s.Groups = append(s.Groups, Group{Key: k, Stages: statsOf(durationsOf(groups[k]), Stages)})
		}
	}
	s.Breaches = Evaluate(incidents, exps, until)
	if s.Breaches == nil {
		s.Breaches = []Breach{}
	}
	s.BreachesByDay = breachesByDay(s.Breaches)
	return s
}

func keyOf(i Incident, by string) string {
	switch by {
	case BySite:
		return orUnknown(i.Site)
	case ByRule:
		return orUnknown(i.Rule)
	case ByDay:
		t := i.Detected()
		if t.IsZero() {
			t = i.FirstEvent()
		}
		return t.UTC().Format(time.DateOnly)
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func durationsOf(incidents []Incident) map[Stage][]float64 {
	out := make(map[Stage][]float64)
	for _, i := range incidents {
		for st, d := range i.Durations() {
			out[st] = append(out[st], d.Seconds())
		}
	}
	return out
}

// statsOf computes the percentiles of each stage with durations, in the
// order of stages.
func statsOf(d map[Stage][]float64, stages []Stage) []StageStats {
	out := []StageStats{}
	for _, st := range stages {
		v := d[st]
		if len(v) == 0 {
			continue
		}
		sort.Float64s(v)
		out = append(out, StageStats{Stage: st, Count: len(v),
			P50: Quantile(v, 0.50), P90: Quantile(v, 0.90), P99: Quantile(v, 0.99)})
	}
	return out
}

// Quantile is the empirical p-quantile of sorted values: the smallest
// value with at least a fraction p of the values at or below it.
func Quantile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return stat.Quantile(p, stat.Empirical, sorted, nil)
}

// sample picks at most n of the sorted values, evenly, keeping the first
// and the last.
func sample(sorted []float64, n int) []float64 {
	sort.Float64s(sorted)
	if len(sorted) <= n {
		return slices.Clone(sorted)
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = sorted[i*(len(sorted)-1)/(n-1)]
	}
	return out
}

func breachesByDay(bs []Breach) []DayCount {
	m := make(map[string]int)
	for _, b := range bs {
		m[b.Due.UTC().Format(time.DateOnly)]++
	}
	out := []DayCount{}
	for d, c := range m {
		out = append(out, DayCount{Day: d, Count: c})
	}
	slices.SortFunc(out, func(a, b DayCount) int { return cmpString(a.Day, b.Day) })
	return out
}
