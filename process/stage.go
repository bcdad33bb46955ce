package process

import (
	"slices"
	"time"
)

// Stage is one step of the security process.
type Stage string

// The stages, in the order an incident goes through them.
const (
	// StageDetect runs from the first log line of the attack (the
	// sighting's first_seen, the detector's event time) to the detection.
	StageDetect Stage = "detect"
	// StageShare runs from the detection to every node holding a
	// sighting of the indicator.
	StageShare Stage = "share"
	// StageDecide runs from the detection to the mesh-wide block's commit.
	StageDecide Stage = "decide"
	// StageEnforce runs from the detection to the block enforced on
	// every node.
	StageEnforce Stage = "enforce"
	// StageTriage runs from the detection to its acknowledgement, or an
	// outside ticket about the indicator taken up or closed.
	StageTriage Stage = "triage"
	// StageRemediate runs from the detection to the indicator blocked on
	// every node or an outside ticket about it closed, whichever is first.
	StageRemediate Stage = "remediate"
	// StageCompliance is how long a node stayed out of compliance (its
	// enforced state not the desired one). It belongs to no indicator.
	StageCompliance Stage = "compliance"
)

// Stages are the indicator stages, in order.
var Stages = []Stage{StageDetect, StageShare, StageDecide, StageEnforce, StageTriage, StageRemediate}

// AllStages are Stages and StageCompliance.
var AllStages = append(slices.Clone(Stages), StageCompliance)

// Valid reports whether s is one of AllStages.
func (s Stage) Valid() bool { return slices.Contains(AllStages, s) }

// Record is what one node knows of one indicator, by its own clock. A
// zero time means "not yet" (or "not known here").
type Record struct {
	Indicator string `json:"indicator"`
	// Node is the node that recorded it.
	Node string `json:"node"`
	// Site, Rule and Severity describe the earliest sighting of the
	// indicator this node holds (its site, detector, severity; the
	// highest severity of them all).
	Site     string `json:"site,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Severity string `json:"severity,omitempty"`
	// Detections are the IDs of this node's own detections of it (at
	// most MaxDetections), whose acknowledgements count as triage.
	Detections []string `json:"detections,omitempty"`
	// FirstEvent is the earliest first_seen of its sightings: the first
	// log line's time, by the detecting node's clock.
	FirstEvent time.Time `json:"first_event,omitzero"`
	// Detected is when this node's detector fired on it; when this node
	// did not detect it, when the earliest sighting of it was sealed by
	// the node that did.
	Detected time.Time `json:"detected,omitzero"`
	// Received is when this node first held a sighting of it.
	Received time.Time `json:"received,omitzero"`
	// Committed is when this node first saw a mesh-wide block of it.
	Committed time.Time `json:"committed,omitzero"`
	// Enforced is when the mesh-wide block took effect here.
	Enforced time.Time `json:"enforced,omitzero"`
	// Acked is when the first of Detections was acknowledged.
	Acked time.Time `json:"acked,omitzero"`
}

// MaxDetections bounds Record.Detections.
const MaxDetections = 16

// earliest returns the earlier of two times, a zero time being "unset".
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// MergeInto folds newer knowledge into r: every time keeps its earliest
// non-zero value, descriptions fill in where empty, detections add up
// (bounded). It reports whether r changed.
func (r *Record) MergeInto(n Record) bool {
	before := r.clone()
	r.FirstEvent = earliest(r.FirstEvent, n.FirstEvent)
	r.Detected = earliest(r.Detected, n.Detected)
	r.Received = earliest(r.Received, n.Received)
	r.Committed = earliest(r.Committed, n.Committed)
	r.Enforced = earliest(r.Enforced, n.Enforced)
	r.Acked = earliest(r.Acked, n.Acked)
	if r.Site == "" {
		r.Site = n.Site
	}
	if r.Rule == "" {
		r.Rule = n.Rule
	}
	if severityRank(n.Severity) > severityRank(r.Severity) {
		r.Severity = n.Severity
	}
	for _, d := range n.Detections {
		if len(r.Detections) < MaxDetections && !slices.Contains(r.Detections, d) {
			r.Detections = append(r.Detections, d)
		}
	}
	return !before.equal(*r)
}

func (r Record) clone() Record {
	r.Detections = slices.Clone(r.Detections)
	return r
}

func (r Record) equal(o Record) bool {
	return r.Indicator == o.Indicator && r.Node == o.Node && r.Site == o.Site && r.Rule == o.Rule &&
		r.Severity == o.Severity && slices.Equal(r.Detections, o.Detections) &&
		r.FirstEvent.Equal(o.FirstEvent) && r.Detected.Equal(o.Detected) && r.Received.Equal(o.Received) &&
		r.Committed.Equal(o.Committed) && r.Enforced.Equal(o.Enforced) && r.Acked.Equal(o.Acked)
}

// severityRank orders severities, unknown ones lowest.
func severityRank(s string) int {
	switch s {
	case "low":
		return 1
	case "medium":
		return 2
	case "high":
		return 3
	case "critical":
		return 4
	}
	return 0
}

// Incident is one indicator's journey through the mesh, merged from the
// Records of one or more nodes and the outside events linked to it.
type Incident struct {
	Indicator string `json:"indicator"`
	Site      string `json:"site,omitempty"`
	Rule      string `json:"rule,omitempty"`
	Severity  string `json:"severity,omitempty"`
	// Detection is one detection ID of it, when a node detected it.
	Detection string `json:"detection,omitempty"`
	// Nodes are the merged Records, one per node.
	Nodes []Record `json:"nodes"`
	// Expected is how many nodes make "every node".
	Expected int `json:"expected"`
	// TriagedOutside and ClosedOutside are the times of the first outside
	// event about it that took it up, and that closed it.
	TriagedOutside time.Time `json:"triaged_outside,omitzero"`
	ClosedOutside  time.Time `json:"closed_outside,omitzero"`
}

// Merge groups records by indicator into incidents, one record per node
// (records of the same node and indicator are merged), each expecting
// expected nodes (at least 1; fewer than the nodes merged means as many
// as merged). Incidents come ordered by indicator.
func Merge(records []Record, expected int) []Incident {
	byInd := make(map[string]map[string]*Record)
	for _, r := range records {
		m := byInd[r.Indicator]
		if m == nil {
			m = make(map[string]*Record)
			byInd[r.Indicator] = m
		}
		if cur, ok := m[r.Node]; ok {
			cur.MergeInto(r)
		} else {
			c := r.clone()
			m[r.Node] = &c
		}
	}
	out := make([]Incident, 0, len(byInd))
	for ind, m := range byInd {
		inc := Incident{Indicator: ind}
		for _, r := range m {
			inc.Nodes = append(inc.Nodes, *r)
		}
		slices.SortFunc(inc.Nodes, func(a, b Record) int { return cmpString(a.Node, b.Node) })
		inc.Expected = max(expected, 1, len(inc.Nodes))
		// The description of the earliest detection wins.
		var first time.Time
		for _, r := range inc.Nodes {
			if inc.Detection == "" && len(r.Detections) > 0 {
				inc.Detection = r.Detections[0]
			}
			if severityRank(r.Severity) > severityRank(inc.Severity) {
				inc.Severity = r.Severity
			}
			if r.Detected.IsZero() {
				continue
			}
			if first.IsZero() || r.Detected.Before(first) {
				first = r.Detected
				if r.Site != "" {
					inc.Site = r.Site
				}
				if r.Rule != "" {
					inc.Rule = r.Rule
				}
			}
		}
		for _, r := range inc.Nodes {
			if inc.Site == "" {
				inc.Site = r.Site
			}
			if inc.Rule == "" {
				inc.Rule = r.Rule
			}
		}
		out = append(out, inc)
	}
	slices.SortFunc(out, func(a, b Incident) int { return cmpString(a.Indicator, b.Indicator) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// FirstEvent is the first log line's time, Detected the detection's:
// the earliest over the nodes.
func (i Incident) FirstEvent() time.Time {
	var t time.Time
	for _, r := range i.Nodes {
		t = earliest(t, r.FirstEvent)
	}
	return t
}

// Detected is when the indicator was first detected.
func (i Incident) Detected() time.Time {
	var t time.Time
	for _, r := range i.Nodes {
		t = earliest(t, r.Detected)
	}
	return t
}

// everyNode returns the latest of field over the nodes when Expected
// nodes have it set, else zero.
func (i Incident) everyNode(field func(Record) time.Time) time.Time {
	var last time.Time
	n := 0
	for _, r := range i.Nodes {
		t := field(r)
		if t.IsZero() {
			continue
		}
		n++
		if t.After(last) {
			last = t
		}
	}
	if n < i.Expected {
		return time.Time{}
	}
	return last
}

// Start is when a stage's clock starts: the first event for detect, the
// detection for the others. Zero when unknown.
func (i Incident) Start(s Stage) time.Time {
	if s == StageDetect {
		return i.FirstEvent()
	}
	return i.Detected()
}

// Done is when a stage completed, zero if it has not (or is unknown).
func (i Incident) Done(s Stage) time.Time {
	switch s {
	case StageDetect:
		return i.Detected()
	case StageShare:
		return i.everyNode(func(r Record) time.Time { return r.Received })
	case StageDecide:
		var t time.Time
		for _, r := range i.Nodes {
			t = earliest(t, r.Committed)
		}
		return t
	case StageEnforce:
		return i.everyNode(func(r Record) time.Time { return r.Enforced })
	case StageTriage:
		t := i.ClosedOutside
		t = earliest(t, i.TriagedOutside)
		for _, r := range i.Nodes {
			t = earliest(t, r.Acked)
		}
		return t
	case StageRemediate:
		return earliest(i.Done(StageEnforce), i.ClosedOutside)
	}
	return time.Time{}
}

// Duration is how long stage s took, and whether it is known (both its
// start and its end are). A stage that ends before it starts (clocks of
// different nodes) took zero.
func (i Incident) Duration(s Stage) (time.Duration, bool) {
	start, done := i.Start(s), i.Done(s)
	if start.IsZero() || done.IsZero() {
		return 0, false
	}
	return max(done.Sub(start), 0), true
}

// Durations returns the known durations of i's stages.
func (i Incident) Durations() map[Stage]time.Duration {
	out := make(map[Stage]time.Duration)
	for _, s := range Stages {
		if d, ok := i.Duration(s); ok {
			out[s] = d
		}
	}
	return out
}
