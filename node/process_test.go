package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/process/report"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/siem"
)

// metricOf reads one sample of the node's registry: a counter's value or
// a histogram's count, by name and one label.
func metricOf(t *testing.T, n *Node, name, label, value string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if h := m.GetHistogram(); h != nil {
						return float64(h.GetSampleCount())
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// A scripted incident on a real node: six failed logins whose first line
// is stamped 10 s before the detection, the detection at the node's clock,
// the mesh-wide block, an acknowledgement 90 s later, a ticket closed
// elsewhere. The measured durations are the differences of the recorded
// events; the report of the node's export says the same.
func TestProcessScriptedIncident(t *testing.T) {
	clk := &testClock{t: time.Now().Truncate(time.Second)}
	jl := filepath.Join(t.TempDir(), "events.jsonl")
	n := startSingleWith(t, Options{Clock: clk.Now}, func(c *Config) {
		c.Process.Expectations = []process.Expectation{
			{Name: "ack-fast", Stage: process.StageTriage, Within: time.Minute},
			{Name: "detect-slow", Stage: process.StageDetect, Within: time.Hour},
		}
		c.Events.JSONLines = jl
		c.Alerts.Rules = []alert.Rule{{Name: "playbook", On: alert.KindBreach, Sinks: []string{alert.SinkJSONLines}}}
	})
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ctx := t.Context()
	c := localAdminClient(t, n.deps.Config.SocketPath())

	t0 := clk.Now()
	first := t0.Add(-10 * time.Second)
	src := "203.0.113.50"
	ind := intel.IndicatorFromAddr(netip.MustParseAddr(src))
	var lines []string
	for i := range 6 {
		lines = append(lines, fmt.Sprintf("%s solo sshd[%d]: Failed password for root from %s port %d ssh2",
			first.Add(time.Duration(i)*time.Second).Format(time.Stamp), 100+i, src, 40000+i))
	}
	appendLog(t, n.deps.Config.Detectors.Paths[0], lines...)
	waitFor(t, "the mesh-wide block to be enforced", func() bool {
		tl, _ := n.Timeline(ind)
		return !tl.MeshEnforced().IsZero()
	})
	tl, _ := n.Timeline(ind)

	clk.Advance(90 * time.Second)
	ds, err := c.Detections(ctx, admin.DetectionQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, d := range ds {
		if d.Sighting.Sighting.Indicator == ind {
			id = d.ID
		}
	}
	if id == "" {
		t.Fatalf("no detection of %s in %+v", src, ds)
	}
	if _, err := c.Ack(ctx, id, "looking"); err != nil {
		t.Fatal(err)
	}

	enforce := tl.MeshEnforced().Sub(tl.Detected)
	want := map[process.Stage]time.Duration{
		process.StageDetect:    tl.Detected.Sub(first), // 10 s: the detection is at t0
		process.StageShare:     tl.Received.Sub(tl.Detected),
		process.StageDecide:    tl.Committed.Sub(tl.Detected),
		process.StageEnforce:   enforce,
		process.StageTriage:    90 * time.Second,
		process.StageRemediate: enforce,
	}
	if want[process.StageDetect] != 10*time.Second {
		t.Fatalf("detected at %v, want t0 %v", tl.Detected, t0)
	}
	check := func(what string, stages []process.StageStats) {
		t.Helper()
		got := map[process.Stage]process.StageStats{}
		for _, s := range stages {
			got[s.Stage] = s
		}
		for st, d := range want {
			if s := got[st]; s.Count != 1 || s.P50 != d.Seconds() || s.P99 != d.Seconds() {
				t.Errorf("%s: stage %s %+v, want one incident of %v", what, st, s, d)
			}
		}
	}
	sum, err := c.ProcessSummary(ctx, "1d", "rule")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Incidents != 1 || len(sum.Groups) != 1 || sum.Groups[0].Key != "ssh-bruteforce" {
		t.Fatalf("summary %+v, want one incident of ssh-bruteforce", sum)
	}
	check("GET /v1/process", sum.Stages)

	// The late acknowledgement is a breach, counted once.
	bs, err := c.ProcessBreaches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Expectation != "ack-fast" || bs[0].Open || bs[0].Late != 30*time.Second || bs[0].Detection != id {
		t.Fatalf("breaches %+v, want ack-fast closed 30s late for %s", bs, id)
	}
	if got := metricOf(t, n, "meshward_process_breaches_total", "expectation", "ack-fast"); got != 1 {
		t.Errorf("breaches counted %v, want 1", got)
	}
	// The breach is alerted through the rule on breach: it closed before
	// any pass saw it open, so it fires and resolves, once, however many
	// passes see it.
	if _, err := c.ProcessBreaches(ctx); err != nil {
		t.Fatal(err)
	}
	var states []string
	waitFor(t, "the breach's firing and resolution in the JSON lines", func() bool {
		b, _ := os.ReadFile(jl)
		states = states[:0]
		for _, l := range strings.Split(string(b), "\n") {
			var e siem.Event
			if json.Unmarshal([]byte(l), &e) == nil && e.Kind == siem.KindAlert && e.Alert != nil && e.Alert.Rule == "playbook" {
				states = append(states, e.Alert.State)
			}
		}
		return len(states) >= 2
	})
	if len(states) != 2 || states[0] != alert.StateFiring || states[1] != alert.StateResolved {
		t.Errorf("breach alerts %v, want one firing then one resolved", states)
	}
	if _, err := c.ProcessBreaches(ctx); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{alert.StateFiring, alert.StateResolved} {
		if got := metricOf(t, n, "meshward_alerts_notifications_total", "state", st); got != 1 {
			t.Errorf("alert notifications %s after another pass: %v, want 1", st, got)
		}
	}
	if got := metricOf(t, n, "meshward_process_seconds", "stage", "triage"); got != 1 {
		t.Errorf("triage observed %v times, want 1", got)
	}

	// The report of the node's export says the same, and renders.
	ex, err := c.ProcessExport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := process.BuildReport([]process.Export{ex}, ex.Generated.Add(-24*time.Hour), ex.Generated)
	check("report", rep.Summary.Stages)
	for _, f := range []string{report.FormatHTML, report.FormatMD} {
		doc, files, err := report.Render(rep, f, "")
		if err != nil || len(files) != 0 {
			t.Fatalf("%s: %v", f, err)
		}
		if k := len(regexp.MustCompile(`<svg|data:image/svg\+xml`).FindAll(doc, -1)); k != 7 {
			t.Errorf("%s: %d charts, want 7 (six stages, breaches per day)", f, k)
		}
	}

	// A ticket closed elsewhere, naming the indicator in its text, 30 s
	// after the detection: remediation is the earlier of it and the block,
	// triage the earlier of it and the acknowledgement.
	closed := t0.Add(30 * time.Second)
	res, err := c.PostProcessEvent(ctx, process.Event{Source: "ticket", Kind: "ticket_closed", ExternalID: "INC-7",
		Time: closed, Text: "Closed: brute force from " + src + " blocked."})
	if err != nil || res.Duplicate || len(res.Event.Linked) != 1 || res.Event.Linked[0] != ind.Key() {
		t.Fatalf("post event: %+v %v, want it linked to %s", res, err, ind.Key())
	}
	want[process.StageRemediate] = min(enforce, 30*time.Second)
	want[process.StageTriage] = 30 * time.Second // a closed ticket takes it up too
	if sum, err = c.ProcessSummary(ctx, "1d", ""); err != nil {
		t.Fatal(err)
	}
	check("after the ticket", sum.Stages)

	// Bad queries: refused and counted by reason.
	for _, q := range []struct{ since, by, reason string }{{"soon", "", "bad_since"}, {"500d", "", "bad_since"}, {"1d", "colour", "bad_by"}} {
		_, err := c.ProcessSummary(ctx, q.since, q.by)
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("since=%q by=%q: %v, want HTTP 400", q.since, q.by, err)
		}
	}
	if got := metricOf(t, n, "meshward_admin_requests_rejected_total", "reason", "bad_since"); got != 2 {
		t.Errorf("rejected{bad_since} = %v, want 2", got)
	}
	if got := metricOf(t, n, "meshward_admin_requests_rejected_total", "reason", "bad_by"); got != 1 {
		t.Errorf("rejected{bad_by} = %v, want 1", got)
	}

	// Hostile events: refused with a named reason, counted.
	for _, bad := range []struct {
		ev     process.Event
		status int
		reason string
	}{
		{process.Event{Source: "Ticket System", Kind: "ticket_closed", ExternalID: "x", Time: t0}, 400, process.ReasonBadSource},
		{process.Event{Source: "ticket", Kind: "ticket_closed", ExternalID: "x", Time: clk.Now().Add(time.Hour)}, 400, process.ReasonFutureTime},
		{process.Event{Source: "ticket", Kind: "ticket_closed", ExternalID: "INC-7", Time: closed, Text: "other"}, 409, process.ReasonConflict},
	} {
		_, err := c.PostProcessEvent(ctx, bad.ev)
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.Status != bad.status {
			t.Errorf("%+v: %v, want HTTP %d", bad.ev, err, bad.status)
		}
		if got := metricOf(t, n, "meshward_process_events_rejected_total", "reason", bad.reason); got != 1 {
			t.Errorf("rejected{%s} = %v, want 1", bad.reason, got)
		}
	}
}

// The node's compliance check feeds the process measurement: a stretch
// out of compliance is recorded as a span and observed once.
func TestProcessRecordsComplianceTransitions(t *testing.T) {
	n := startSingle(t, nil)
	waitFor(t, "the process measurement to watch compliance", func() bool {
		p := n.compliance
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.watchers) > 0
	})
	out := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	n.compliance.transition(responders.ComplianceTransition{Compliant: false, At: out, OutSince: out})
	n.compliance.transition(responders.ComplianceTransition{Compliant: true, At: out.Add(20 * time.Second), OutSince: out, Out: 20 * time.Second})
	var span process.Span
	waitFor(t, "the span to be recorded", func() bool {
		spans, err := n.process.rec.ActiveSpans()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range spans {
			if s.Out.Equal(out) && !s.Back.IsZero() {
				span = s
				return true
			}
		}
		return false
	})
	if span.Duration(time.Now()) != 20*time.Second {
		t.Errorf("span %+v, want 20s out", span)
	}
	if got := metricOf(t, n, "meshward_process_seconds", "stage", "compliance"); got < 1 {
		t.Errorf("compliance observed %v times", got)
	}
	sum, err := localAdminClient(t, n.deps.Config.SocketPath()).ProcessSummary(t.Context(), "1d", "")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sum.Stages {
		found = found || s.Stage == process.StageCompliance && s.Count >= 1 && s.P99 >= 20
	}
	if !found {
		t.Errorf("summary stages %+v lack the compliance span", sum.Stages)
	}
}

func TestProcessConfigSection(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
process:
  evaluate_every: 10s
  expectations:
    - {name: ack-high, severity: high, stage: triage, within: 15m}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := process.Expectation{Name: "ack-high", Severity: "high", Stage: process.StageTriage, Within: 15 * time.Minute}
	if cfg.Process.EvaluateEvery != 10*time.Second || len(cfg.Process.Expectations) != 1 || cfg.Process.Expectations[0] != want {
		t.Errorf("process section %+v", cfg.Process)
	}
	_, err = ParseConfig([]byte("process:\n  expectations:\n    - {name: x, stage: lunch, within: 1m}\n"))
	if err == nil || !regexp.MustCompile(`process\.expectations\[0\]\.stage`).MatchString(err.Error()) {
		t.Errorf("bad stage: %v, want an error naming process.expectations[0].stage", err)
	}
}
