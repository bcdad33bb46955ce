package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/store"
)

// processPart is the node's process measurement: it copies what the
// node's timelines, stored sightings and acknowledgements say of each
// indicator into the process recorder (kept in the store, so it outlives
// the bounded in-memory timelines and restarts), and evaluates the
// playbook's expectations every process.evaluate_every and before every
// answer of the process routes.
type processPart struct {
	n   *Node
	rec *process.Recorder
	cfg process.Config

	mu sync.Mutex // serialises refresh
	// synced is the last timeline copied of each indicator, so that a
	// pass reads the store only for what changed. It holds no more
	// indicators than the timelines do.
	synced map[string]Timeline
	// told is each breach handed to the alerting rules, and whether it
	// was open then.
	told map[string]bool
}

// newProcessPart builds the node's process measurement and registers its
// metrics.
func newProcessPart(n *Node) *processPart {
	d := n.deps
	p := &processPart{n: n, rec: process.NewRecorder(d.Store, d.ID, n.now), cfg: d.Config.Process,
		synced: make(map[string]Timeline)}
	p.rec.SetExpectations(p.cfg.Expectations)
	d.Metrics.MustRegister(p.rec.Collectors()...)
	return p
}

// run refreshes the records and evaluates the expectations every
// EvaluateEvery, and prunes what is older than the store's retention
// daily, until ctx ends.
//
// It also records how long the node stays out of compliance: the node's
// compliance check is its process.ComplianceSource.
func (p *processPart) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if p.n.compliance != nil {
		var src process.ComplianceSource = p.n
		wg.Go(func() {
			src.WatchCompliance(ctx, func(t process.Transition) {
				if err := p.rec.Compliance(t); err != nil && ctx.Err() == nil {
					p.n.log.Error("record compliance transition", "err", err)
				}
			})
		})
	}
	t := time.NewTicker(p.cfg.EvaluateEvery)
	defer t.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := p.refresh(); err != nil && ctx.Err() == nil {
			p.n.log.Error("process measurement", "err", err)
		}
		if now := p.n.now(); now.Sub(lastPrune) >= 24*time.Hour {
			lastPrune = now
			if _, err := p.rec.Prune(now.Add(-p.n.deps.Config.Store.Retention)); err != nil && ctx.Err() == nil {
				p.n.log.Error("prune process records", "err", err)
			}
		}
	}
}

// snapshot returns a copy of every timeline held.
func (ts *timelines) snapshot() []Timeline {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]Timeline, 0, len(ts.order))
	for _, k := range ts.order {
		out = append(out, *ts.m[k])
	}
	return out
}

func sameTimeline(a, b Timeline) bool {
	return a.Detected.Equal(b.Detected) && a.Received.Equal(b.Received) &&
		a.Committed.Equal(b.Committed) && a.Enforced.Equal(b.Enforced)
}

// refresh copies the changed timelines and new acknowledgements into the
// recorder, then has it observe the new durations and evaluate the
// expectations.
func (p *processPart) refresh() ([]process.Incident, []process.Breach, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.sync(); err != nil {
		return nil, nil, err
	}
	incs, bs, err := p.rec.Refresh(p.cfg.Expectations)
	if err == nil {
		p.alertBreaches(bs)
	}
	return incs, bs, err
}

// alertBreaches hands the breaches to the alerting rules (`on: breach`):
// a breach fires when first seen and resolves when it closes; one closed
// before any pass saw it open fires and resolves at once, so a late
// acknowledgement between two passes is still told. told remembers what
// was handed on, so that each breach is told once, however many passes
// see it; breaches no longer listed (pruned) are forgotten.
func (p *processPart) alertBreaches(bs []process.Breach) {
	if p.told == nil {
		p.told = make(map[string]bool)
	}
	seen := make(map[string]bool, len(bs))
	for _, b := range bs {
		id := b.ID()
		seen[id] = true
		open, told := p.told[id]
		if told && (open == b.Open || !open) {
			continue
		}
		ev := alert.Event{Kind: alert.KindBreach, Key: id, Severity: intel.Severity(b.Severity), Site: b.Site, At: b.Due,
			Detail: fmt.Sprintf("expectation %s: %s of %s due %s, %s late", b.Expectation, b.Stage, b.Indicator,
				b.Due.UTC().Format(time.RFC3339), b.Late.Round(time.Second))}
		if typ, value, ok := strings.Cut(b.Indicator, ":"); ok {
			if ind, err := intel.NewIndicator(intel.IndicatorType(typ), value); err == nil {
				ev.Indicator = ind
			}
		}
		if !told {
			p.n.RaiseAlertEvent(ev)
		}
		if !b.Open {
			ev.Resolved, ev.At = true, b.Done
			p.n.RaiseAlertEvent(ev)
		}
		p.told[id] = b.Open
	}
	for id := range p.told {
		if !seen[id] {
			delete(p.told, id)
		}
	}
}

func (p *processPart) sync() error {
	tls := p.n.timelines.snapshot()
	live := make(map[string]bool, len(tls))
	var recs []process.Record
	var changed []Timeline
	for _, t := range tls {
		live[t.Indicator] = true
		if prev, ok := p.synced[t.Indicator]; ok && sameTimeline(prev, t) {
			continue
		}
		rec, err := p.recordOf(t)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
		changed = append(changed, t)
	}
	if len(recs) > 0 {
		if err := p.rec.UpdateMany(recs); err != nil {
			return fmt.Errorf("record process: %w", err)
		}
	}
	for _, t := range changed {
		p.synced[t.Indicator] = t
	}
	for k := range p.synced {
		if !live[k] {
			delete(p.synced, k)
		}
	}
	return p.syncAcks()
}

// recordOf is what this node knows of one indicator: its timeline and
// the sightings of it stored here.
func (p *processPart) recordOf(t Timeline) (process.Record, error) {
	rec := process.Record{Indicator: t.Indicator, Detected: t.Detected, Received: t.Received,
		Committed: t.Committed, Enforced: t.MeshEnforced()}
	typ, value, ok := strings.Cut(t.Indicator, ":")
	if !ok {
		return rec, nil
	}
	ind, err := intel.NewIndicator(intel.IndicatorType(typ), value)
	if err != nil {
		return rec, nil // not an indicator a sighting could name
	}
	sightings, err := p.n.deps.Store.SightingsFor(ind, time.Time{})
	if err != nil {
		return rec, fmt.Errorf("process record of %s: %w", t.Indicator, err)
	}
	var sealed time.Time // when the earliest detection was sealed by its detector's node
	for _, s := range sightings {
		if s.Sighting.Partial {
			continue // a summary below the threshold is no detection
		}
		if rec.FirstEvent.IsZero() || s.Sighting.FirstSeen.Before(rec.FirstEvent) {
			rec.FirstEvent = s.Sighting.FirstSeen
		}
		if sealed.IsZero() || s.Sent.Before(sealed) {
			sealed = s.Sent
			rec.Site, rec.Rule = s.Sighting.Site, s.Sighting.Detector
		}
		if sev := string(s.Sighting.Severity); severityAbove(sev, rec.Severity) {
			rec.Severity = sev
		}
		if s.Origin == p.n.deps.ID && len(rec.Detections) < process.MaxDetections {
			rec.Detections = append(rec.Detections, admin.DetectionID(s.Origin, s.Seq))
		}
	}
	if rec.Detected.IsZero() {
		rec.Detected = sealed
	}
	return rec, nil
}

func severityAbove(a, b string) bool {
	rank := []string{"", "low", "medium", "high", "critical"}
	return slices.Index(rank, a) > slices.Index(rank, b)
}

// syncAcks records when the detections of the records not yet triaged
// were acknowledged.
func (p *processPart) syncAcks() error {
	recs, err := p.rec.Records()
	if err != nil {
		return err
	}
	var ids []string
	owner := make(map[string]string)
	for _, r := range recs {
		if !r.Acked.IsZero() {
			continue
		}
		for _, d := range r.Detections {
			ids = append(ids, d)
			owner[d] = r.Indicator
		}
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), store.MaxAckLookup)]
		ids = ids[len(chunk):]
		acks, err := p.n.deps.Store.AcksFor(chunk)
		if err != nil {
			return fmt.Errorf("read acknowledgements: %w", err)
		}
		var recs []process.Record
		for id, a := range acks {
			recs = append(recs, process.Record{Indicator: owner[id], Acked: a.At})
		}
		if len(recs) > 0 {
			if err := p.rec.UpdateMany(recs); err != nil {
				return err
			}
		}
	}
	return nil
}

// The process routes of the admin API (admin.ProcessService).

var _ admin.ProcessService = (*adminAPI)(nil)

func (a *adminAPI) process() *processPart { return a.statusAPI.n.process }

// ProcessSummary measures the incidents of the last since.
func (a *adminAPI) ProcessSummary(_ context.Context, since time.Duration, by string) (process.Summary, error) {
	p := a.process()
	incs, _, err := p.refresh()
	if err != nil {
		return process.Summary{}, err
	}
	spans, err := p.rec.ActiveSpans()
	if err != nil {
		return process.Summary{}, err
	}
	now := p.n.now()
	return process.Summarize(incs, spans, p.cfg.Expectations, by, now.Add(-since), now), nil
}

// ProcessBreaches lists the breaches of the expectations.
func (a *adminAPI) ProcessBreaches(context.Context) ([]process.Breach, error) {
	_, bs, err := a.process().refresh()
	return bs, err
}

// ProcessEvent takes in an outside event.
func (a *adminAPI) ProcessEvent(_ context.Context, body []byte) (process.Stored, bool, error) {
	return a.process().rec.AddEvent(body)
}

// ProcessExport is everything this node recorded of the process, as GET
// /v1/process/export answers it: what a report merging several nodes
// takes from each (process.BuildReport).
func (n *Node) ProcessExport(ctx context.Context) (process.Export, error) {
	return newAdminAPI(n).ProcessExport(ctx)
}

// ProcessExport is everything this node recorded of the process.
func (a *adminAPI) ProcessExport(context.Context) (process.Export, error) {
	p := a.process()
	if _, _, err := p.refresh(); err != nil {
		return process.Export{}, err
	}
	n := p.n
	ex := process.Export{Node: n.deps.ID, Site: n.deps.Config.Site, Members: n.deps.Consensus.MemberCount(),
		Generated: n.now().UTC(), Expectations: p.cfg.Expectations}
	var err error
	if ex.Records, err = p.rec.Records(); err != nil {
		return ex, err
	}
	if ex.Events, err = p.rec.Events(); err != nil {
		return ex, err
	}
	if ex.Spans, err = p.rec.ActiveSpans(); err != nil {
		return ex, err
	}
	ex.Records, ex.Events, ex.Spans = nonNilSlice(ex.Records), nonNilSlice(ex.Events), nonNilSlice(ex.Spans)
	if ex.Expectations == nil {
		ex.Expectations = []process.Expectation{}
	}
	return ex, nil
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
