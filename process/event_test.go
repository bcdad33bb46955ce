package process

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/store"
)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(store.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

var evNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestParseEventRefusesMalformed(t *testing.T) {
	ok := `"source":"ticket","kind":"ticket_closed","external_id":"INC-1","time":"2026-12-01T11:00:00Z"`
	for _, c := range []struct {
		name, body, reason, field string
	}{
		{"not json", `{"source":`, ReasonMalformed, ""},
		{"unknown field", `{` + ok + `,"severity":"high"}`, ReasonMalformed, ""},
		{"trailing data", `{` + ok + `} {}`, ReasonMalformed, ""},
		{"too large", `{` + ok + `,"text":"` + strings.Repeat("a", MaxEventBytes) + `"}`, ReasonTooLarge, ""},
		{"no source", `{"kind":"ticket_closed","external_id":"x","time":"2026-12-01T11:00:00Z"}`, ReasonBadSource, "source"},
		{"source with spaces", `{"source":"my siem","kind":"k","external_id":"x","time":"2026-12-01T11:00:00Z"}`, ReasonBadSource, "source"},
		{"kind uppercase", `{"source":"siem","kind":"Closed","external_id":"x","time":"2026-12-01T11:00:00Z"}`, ReasonBadKind, "kind"},
		{"no external id", `{"source":"siem","kind":"alert","time":"2026-12-01T11:00:00Z"}`, ReasonBadExternalID, "external_id"},
		{"control in external id", `{"source":"siem","kind":"alert","external_id":"a\nb","time":"2026-12-01T11:00:00Z"}`, ReasonBadExternalID, "external_id"},
		{"long external id", `{"source":"siem","kind":"alert","external_id":"` + strings.Repeat("x", 129) + `","time":"2026-12-01T11:00:00Z"}`, ReasonBadExternalID, "external_id"},
		{"no time", `{"source":"siem","kind":"alert","external_id":"x"}`, ReasonMissingTime, "time"},
		{"far future", `{"source":"siem","kind":"alert","external_id":"x","time":"2026-12-01T12:06:00Z"}`, ReasonFutureTime, "time"},
		{"too old", `{"source":"siem","kind":"alert","external_id":"x","time":"2020-01-01T00:00:00Z"}`, ReasonTooOld, "time"},
		{"text too long", `{` + ok + `,"text":"` + strings.Repeat("a", MaxEventText+1) + `"}`, ReasonBadText, "text"},
		{"bad indicator", `{` + ok + `,"indicators":["203.0.113.5","not an indicator!"]}`, ReasonBadIndicator, "indicators[1]"},
		{"too many indicators", `{` + ok + `,"indicators":[` + manyIPs(MaxEventIndicators+1) + `]}`, ReasonTooManyIndicators, "indicators"},
		{"text names too many", `{` + ok + `,"text":"` + strings.ReplaceAll(manyIPs(MaxEventIndicators+1), `"`, ``) + `"}`, ReasonTooManyIndicators, "text"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEvent([]byte(c.body), evNow)
			var rj *Rejection
			if !errors.As(err, &rj) || !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v, want a *Rejection", err)
			}
			if rj.Reason != c.reason || rj.Field != c.field {
				t.Errorf("reason %s field %q (%v), want %s %q", rj.Reason, rj.Field, err, c.reason, c.field)
			}
		})
	}
	// Five minutes ahead is still accepted (clocks differ).
	if _, err := ParseEvent([]byte(`{"source":"siem","kind":"alert","external_id":"x","time":"2026-12-01T12:04:59Z"}`), evNow); err != nil {
		t.Errorf("near future refused: %v", err)
	}
}

func manyIPs(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"198.51.100.%d"`, i%250+1)
		if i >= 250 {
			fmt.Fprintf(&b, `,"192.0.2.%d"`, i%250+1)
		}
	}
	return b.String()
}

// A ticket closed elsewhere whose text names the indicator closes its
// incident: remediation (and triage) from the ticket's time.
func TestRecorderLinksTicketTextAndIsIdempotent(t *testing.T) {
	st := openStore(t)
	r := NewRecorder(st, "A", func() time.Time { return evNow })
	ind := "ipv4:203.0.113.9"
	if err := r.Update(Record{Indicator: ind, Severity: "high", Detected: evNow.Add(-time.Hour), Received: evNow.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"source":"ticket","kind":"ticket_closed","external_id":"INC-42","time":"2026-12-01T11:30:00Z",
		"text":"Blocked 203.0.113[.]9 at the firewall; also seen: evil.example.net"}`)
	ev, added, err := r.AddEvent(body)
	if err != nil || !added {
		t.Fatalf("add: %v %v", added, err)
	}
	if !contains(strings.Join(ev.Linked, " "), ind) {
		t.Fatalf("linked %v, want %s extracted from the text", ev.Linked, ind)
	}
	// The same again: a duplicate, accepted once.
	if _, added, err := r.AddEvent(body); err != nil || added {
		t.Fatalf("again: added %v err %v, want a duplicate", added, err)
	}
	// The same key with other content: a conflict.
	other := []byte(strings.Replace(string(body), "11:30:00", "11:31:00", 1))
	if _, _, err := r.AddEvent(other); ReasonOf(err) != ReasonConflict {
		t.Fatalf("other content: %v, want a conflict", err)
	}
	if _, _, err := r.AddEvent([]byte(`{}`)); ReasonOf(err) != ReasonBadSource {
		t.Fatalf("empty: %v", err)
	}
	incs, _, err := r.Refresh(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 1 {
		t.Fatalf("incidents %+v", incs)
	}
	for s, want := range map[Stage]time.Duration{StageRemediate: 30 * time.Minute, StageTriage: 30 * time.Minute} {
		if d, ok := incs[0].Duration(s); !ok || d != want {
			t.Errorf("%s: %v %v, want %v from the ticket", s, d, ok, want)
		}
	}
	for label, want := range map[string]float64{"accepted": 1, "duplicate": 1} {
		if got := metricValue(t, r, "meshward_process_events_total", "result", label); got != want {
			t.Errorf("events{%s} %v, want %v", label, got, want)
		}
	}
	for reason, want := range map[string]float64{ReasonConflict: 1, ReasonBadSource: 1, ReasonMalformed: 0} {
		if got := metricValue(t, r, "meshward_process_events_rejected_total", "reason", reason); got != want {
			t.Errorf("rejected{%s} %v, want %v", reason, got, want)
		}
	}
	// Observed once per stage, however often refreshed.
	if _, _, err := r.Refresh(nil); err != nil {
		t.Fatal(err)
	}
	if got := histCount(t, r, StageRemediate); got != 1 {
		t.Errorf("remediate observed %d times, want 1", got)
	}
}

// metricValue reads a counter of r by name and one label.
func metricValue(t *testing.T, r *Recorder, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	mfs, err := reg.Gather()
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
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func histCount(t *testing.T, r *Recorder, s Stage) uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshward_process_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == string(s) {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	t.Fatalf("no series for stage %s", s)
	return 0
}

// fakeCompliance replays transitions, as the node's compliance check
// would report them.
type fakeCompliance struct {
	ts   []Transition
	done chan struct{}
}

func (f *fakeCompliance) WatchCompliance(ctx context.Context, fn func(Transition)) {
	for _, t := range f.ts {
		fn(t)
	}
	close(f.done)
	<-ctx.Done()
}

var _ ComplianceSource = (*fakeCompliance)(nil)

func TestComplianceSpansFromASource(t *testing.T) {
	st := openStore(t)
	r := NewRecorder(st, "A", func() time.Time { return evNow })
	src := &fakeCompliance{done: make(chan struct{}), ts: []Transition{
		{Out: true, At: evNow.Add(-time.Hour)},
		{Out: true, At: evNow.Add(-50 * time.Minute)}, // still out: ignored
		{Out: false, At: evNow.Add(-40 * time.Minute)},
		{Out: false, At: evNow.Add(-30 * time.Minute)}, // back without being out: ignored
		{Subject: "nft", Out: true, At: evNow.Add(-10 * time.Minute)},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		src.WatchCompliance(ctx, func(tr Transition) {
			if err := r.Compliance(tr); err != nil {
				t.Error(err)
			}
		})
	})
	<-src.done
	cancel()
	wg.Wait()
	spans, err := r.ActiveSpans()
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 2 {
		t.Fatalf("spans %+v, want one closed (20m) and one open", spans)
	}
	var closed, open Span
	for _, s := range spans {
		if s.Back.IsZero() {
			open = s
		} else {
			closed = s
		}
	}
	if closed.Duration(evNow) != 20*time.Minute || open.Subject != "nft" || open.Duration(evNow) != 10*time.Minute {
		t.Errorf("closed %+v open %+v", closed, open)
	}
	if got := histCount(t, r, StageCompliance); got != 1 {
		t.Errorf("compliance observed %d times, want 1 (the closed span)", got)
	}
	s := Summarize(nil, spans, nil, "", evNow.Add(-2*time.Hour), evNow)
	if len(s.Stages) != 1 || s.Stages[0].Stage != StageCompliance || s.Stages[0].Count != 2 || s.Stages[0].P99 != 1200 {
		t.Errorf("summary stages %+v, want compliance count 2 p99 1200s", s.Stages)
	}
}

// Breaches are counted once each, across refreshes.
func TestRefreshCountsBreachesOnce(t *testing.T) {
	st := openStore(t)
	now := evNow
	r := NewRecorder(st, "A", func() time.Time { return now })
	exps := []Expectation{{Name: "ack-high", Severity: "high", Stage: StageTriage, Within: 15 * time.Minute}}
	r.SetExpectations(exps)
	if err := r.Update(Record{Indicator: "ipv4:203.0.113.1", Severity: "high", FirstEvent: now.Add(-time.Second), Detected: now}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := r.Refresh(exps); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(t, r, "meshward_process_breaches_total", "expectation", "ack-high"); got != 0 {
		t.Fatalf("breaches %v before the deadline", got)
	}
	now = now.Add(16 * time.Minute)
	for range 3 {
		_, bs, err := r.Refresh(exps)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || !bs[0].Open || bs[0].Late != time.Minute {
			t.Fatalf("breaches %+v, want one open 1m late", bs)
		}
	}
	if got := metricValue(t, r, "meshward_process_breaches_total", "expectation", "ack-high"); got != 1 {
		t.Errorf("breaches counted %v, want 1", got)
	}
	// Pruned with its record.
	if n, err := r.Prune(now.Add(time.Hour)); err != nil || n != 3 {
		t.Errorf("pruned %d (%v), want the record, the breach and the stages observed", n, err)
	}
	var left []string
	for _, fam := range []string{famRecord, famBreach, famObserved} {
		st.ScanProcess(fam, func(k string, _ []byte) error { left = append(left, fam+":"+k); return nil })
	}
	if len(left) != 0 {
		t.Errorf("left after pruning: %v", left)
	}
	if recs, _ := r.Records(); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
}
