package process

import (
	"slices"
	"time"
)

// Export is everything one node recorded of the process, for a report
// that merges several nodes (GET /v1/process/export).
type Export struct {
	Node string `json:"node"`
	Site string `json:"site,omitempty"`
	// Members is how many members the node's roster holds.
	Members      int           `json:"members"`
	Generated    time.Time     `json:"generated"`
	Expectations []Expectation `json:"expectations"`
	Records      []Record      `json:"records"`
	Events       []Stored      `json:"events"`
	Spans        []Span        `json:"spans"`
}

// Report is the process measured over the nodes of several exports:
// the overall summary (with samples and breaches) and the groups by
// site, rule and day.
type Report struct {
	Generated time.Time `json:"generated"`
	// Nodes are the nodes whose exports were merged; Expected is how
	// many make "every node" (the nodes merged), Members the largest
	// roster any of them reported.
	Nodes    []string `json:"nodes"`
	Expected int      `json:"expected"`
	Members  int      `json:"members"`
	Summary  Summary  `json:"summary"`
	BySite   []Group  `json:"by_site"`
	ByRule   []Group  `json:"by_rule"`
	ByDay    []Group  `json:"by_day"`
}

// BuildReport merges the exports (one per node; a node's later export
// replaces an earlier one) and measures the period [since, until).
// Share and enforce complete when every node merged holds the sighting
// and enforces the block; the expectations are the first export's of
// each name.
func BuildReport(exports []Export, since, until time.Time) Report {
	byNode := make(map[string]Export)
	for _, e := range exports {
		byNode[e.Node] = e
	}
	rep := Report{Generated: until.UTC()}
	var recs []Record
	var evs []Stored
	var spans []Span
	var exps []Expectation
	seenExp := make(map[string]bool)
	seenEv := make(map[string]bool)
	for _, e := range exports {
		if byNode[e.Node].Generated != e.Generated || slices.Contains(rep.Nodes, e.Node) {
			continue
		}
		rep.Nodes = append(rep.Nodes, e.Node)
		rep.Members = max(rep.Members, e.Members)
		for _, r := range e.Records {
			r.Node = e.Node // a node speaks for itself only
			recs = append(recs, r)
		}
		for _, ev := range e.Events {
			if !seenEv[ev.Key()] {
				seenEv[ev.Key()] = true
				evs = append(evs, ev)
			}
		}
		spans = append(spans, e.Spans...)
		for _, x := range e.Expectations {
			if !seenExp[x.Name] {
				seenExp[x.Name] = true
				exps = append(exps, x)
			}
		}
	}
	slices.Sort(rep.Nodes)
	rep.Expected = max(len(rep.Nodes), 1)
	incs := Link(Merge(recs, rep.Expected), evs)
	rep.Summary = Summarize(incs, spans, exps, "", since, until)
	rep.BySite = Summarize(incs, nil, nil, BySite, since, until).Groups
	rep.ByRule = Summarize(incs, nil, nil, ByRule, since, until).Groups
	rep.ByDay = Summarize(incs, nil, nil, ByDay, since, until).Groups
	return rep
}
