package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/responders"
)

// Continuous compliance on this node (responders.Compliance): the blocks
// every backend holds and the segmentation in the nftables table are
// compared with what they should be every responders.resync and after
// each segmentation apply; what drifted is reported, repaired and
// checked again. Metrics: meshward_compliance_ok (1 compliant, 0 out),
// meshward_compliance_out_seconds (the time each drift lasted). Each
// transition raises an alert event of kind "drift" (resolved when back)
// and reaches every WatchCompliance caller.

// ComplianceReport is this node's compliance, for the admin API and the
// mesh-wide query.
type ComplianceReport = admin.ComplianceReport

// compliancePart runs the node's compliance checks.
type compliancePart struct {
	n   *Node
	c   *responders.Compliance
	out prometheus.Histogram

	mu       sync.Mutex
	watchers map[chan responders.ComplianceTransition]struct{}
}

// watchQueue is how many transitions a WatchCompliance caller may have
// unread; more are dropped for it (and counted in the status).
const watchQueue = 64

func newCompliancePart(n *Node) *compliancePart {
	p := &compliancePart{n: n, watchers: map[chan responders.ComplianceTransition]struct{}{}}
	p.out = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "meshward_compliance_out_seconds",
		Help:    "How long this node stayed out of compliance (kernel state differing from the desired), per drift.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
	})
	p.c = responders.NewCompliance([]responders.ComplianceCheck{blockCheck{n}, segmentCheck{n}}, responders.ComplianceOptions{
		Interval:     n.deps.Config.Responders.Resync,
		Now:          n.now,
		Logger:       n.log.With("part", "compliance"),
		OnTransition: p.transition,
	})
	n.deps.Metrics.MustRegister(p.out, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshward_compliance_ok",
		Help: "1 when the kernel enforces what this node should enforce (blocks, segmentation), 0 when out of compliance.",
	}, func() float64 {
		if p.c.Status().Compliant {
			return 1
		}
		return 0
	}))
	return p
}

// transition records one transition: metric, alert event, watchers.
func (p *compliancePart) transition(tr responders.ComplianceTransition) {
	if tr.Compliant {
		p.out.Observe(tr.Out.Seconds())
	}
	// The node's alerting, where it has one, decides whether to tell.
	if a, ok := any(p.n).(alertRaiser); ok {
		a.RaiseAlertEvent(alert.Event{Kind: alert.KindDrift, Key: p.n.deps.ID, At: tr.At, Resolved: tr.Compliant})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for ch := range p.watchers {
		select {
		case ch <- tr:
		default: // that watcher is behind; the status still shows the drift
		}
	}
}

// alertRaiser is the node's alerting hook (alert.go).
type alertRaiser interface{ RaiseAlertEvent(alert.Event) }

// run runs the checks until ctx ends.
func (p *compliancePart) run(ctx context.Context) {
	p.c.Start(ctx)
	<-ctx.Done()
	p.c.Close()
}

// blockCheck is the reconciler's block check, of the reconciler in force
// (Reload may replace it).
type blockCheck struct{ n *Node }

func (blockCheck) Name() string { return "blocks" }
func (b blockCheck) Drift(ctx context.Context) ([]string, error) {
	return b.n.reconciler().BlockCheck().Drift(ctx)
}
func (b blockCheck) Repair(ctx context.Context) error {
	return b.n.reconciler().BlockCheck().Repair(ctx)
}

// segmentCheck is the segmentation's check; nothing to check in dry run.
type segmentCheck struct{ n *Node }

func (segmentCheck) Name() string { return "segmentation" }
func (s segmentCheck) Drift(ctx context.Context) ([]string, error) {
	if e := s.n.segment.check(); e != nil {
		return e.Drift(ctx)
	}
	return nil, nil
}
func (s segmentCheck) Repair(ctx context.Context) error {
	if e := s.n.segment.check(); e != nil {
		return e.Repair(ctx)
	}
	return nil
}

// Compliance returns this node's compliance as of its last check.
func (n *Node) Compliance() ComplianceReport {
	r := ComplianceReport{Node: n.deps.ID, Site: n.deps.Config.Site}
	if n.compliance != nil {
		r.ComplianceStatus = n.compliance.c.Status()
	}
	if n.segment != nil {
		r.Segmentation = n.segment.Status()
	}
	return r
}

// CheckCompliance runs the compliance checks now (repairing what
// drifted) and returns the result.
func (n *Node) CheckCompliance(ctx context.Context) (ComplianceReport, error) {
	_, err := n.compliance.c.CheckOnce(ctx)
	return n.Compliance(), err
}

// WatchCompliance calls fn with every compliance transition of this node
// — out of compliance at At, or back at At after Out — in order, until
// ctx ends; it returns when ctx has ended. It makes the node a
// process.ComplianceSource (the process measurement's hook): Subject is
// empty (the node as a whole). fn runs on the caller's goroutine; a
// caller more than 64 transitions behind misses the excess.
func (n *Node) WatchCompliance(ctx context.Context, fn func(process.Transition)) {
	n.ComplianceTransitions(ctx, func(tr responders.ComplianceTransition) {
		fn(process.Transition{Out: !tr.Compliant, At: tr.At})
	})
}

// ComplianceTransitions calls fn with every compliance transition, with
// its reasons and, when back, the time spent out, until ctx ends (see
// WatchCompliance).
func (n *Node) ComplianceTransitions(ctx context.Context, fn func(responders.ComplianceTransition)) {
	p := n.compliance
	ch := make(chan responders.ComplianceTransition, watchQueue)
	p.mu.Lock()
	p.watchers[ch] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.watchers, ch)
		p.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case tr := <-ch:
			fn(tr)
		}
	}
}

var _ process.ComplianceSource = (*Node)(nil)

var _ admin.ComplianceService = (*adminAPI)(nil)

// Compliance serves GET /v1/compliance.
func (a *adminAPI) Compliance(context.Context) (ComplianceReport, error) {
	return a.statusAPI.n.Compliance(), nil
}

// maxAnswerReasons bounds the reasons a compliance answer carries over
// the query protocol (a response is at most query.MaxResponseBytes).
const maxAnswerReasons = 32

// complianceAnswer is this node's answer to a mesh-wide compliance
// question: its report, with at most maxAnswerReasons reasons.
func (n *Node) complianceAnswer() ComplianceReport {
	r := n.Compliance()
	trim := func(rs []string) []string {
		if len(rs) <= maxAnswerReasons {
			return rs
		}
		return append(rs[:maxAnswerReasons:maxAnswerReasons], fmt.Sprintf("… and %d more", len(rs)-maxAnswerReasons))
	}
	r.Reasons = trim(r.Reasons)
	if r.LastDrift != nil {
		r.LastDrift.Reasons = trim(r.LastDrift.Reasons)
	}
	return r
}
