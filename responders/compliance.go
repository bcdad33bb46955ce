package responders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/internal/routine"
)

// Continuous compliance: a node keeps comparing what it enforces in the
// kernel (blocks in the sets, segmentation rules and sets) with what it
// should enforce, and repairs the difference. A Compliance runs the
// checks it is given every interval and whenever triggered (after each
// apply); a check that finds drift is reported (out of compliance since
// T, with the reasons), repaired at once and checked again, and the time
// spent out of compliance is recorded when the node is back.

// ComplianceCheck compares one part of what the node enforces with what
// it should enforce. It knows nothing of the others.
type ComplianceCheck interface {
	// Name names the part in reasons and logs ("blocks", "segmentation").
	Name() string
	// Drift returns what differs, one reason each, or none when the part
	// is enforced as desired. It changes nothing.
	Drift(ctx context.Context) ([]string, error)
	// Repair makes the part enforced as desired again.
	Repair(ctx context.Context) error
}

// ComplianceTransition is one change of the node's compliance: out at At
// (Compliant false, with the reasons), or back at At (Compliant true)
// after Out spent out of compliance since OutSince.
type ComplianceTransition struct {
	Compliant bool          `json:"compliant"`
	At        time.Time     `json:"at"`
	OutSince  time.Time     `json:"out_since"`
	Out       time.Duration `json:"out_ns,omitempty"`
	Reasons   []string      `json:"reasons,omitempty"`
}

// ComplianceStatus is the node's compliance as of its last check.
type ComplianceStatus struct {
	// Compliant is true when the last check found nothing to repair, or
	// repaired all it found. Before the first check it is true and
	// CheckedAt is zero.
	Compliant bool `json:"compliant"`
	// OutSince is when the node fell out of compliance (zero when
	// compliant); Reasons say why.
	OutSince time.Time `json:"out_since,omitzero"`
	Reasons  []string  `json:"reasons,omitempty"`
	// CheckedAt is when the last check ended.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// LastDrift is the last time out of compliance that ended: its
	// start, end, length and reasons.
	LastDrift *ComplianceTransition `json:"last_drift,omitempty"`
	// Counters.
	Checks         uint64 `json:"checks"`
	Drifts         uint64 `json:"drifts"`          // checks that found drift
	Repairs        uint64 `json:"repairs"`         // repairs run
	RepairFailures uint64 `json:"repair_failures"` // repairs that failed
	CheckErrors    uint64 `json:"check_errors"`    // checks that could not read the state
	Dropped        uint64 `json:"dropped"`         // transitions the channel had no room for
}

// ComplianceOptions tune a Compliance. The zero value is usable.
type ComplianceOptions struct {
	// Interval is the period of the checks (default 30s).
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives drift and repairs (default: discard).
	Logger *slog.Logger
	// OnTransition is called on every transition, inside the check: it
	// must not block.
	OnTransition func(ComplianceTransition)
}

// transitionQueue is how many transitions Transitions holds unread;
// more are dropped and counted.
const transitionQueue = 64

// Compliance runs compliance checks and tracks the result.
type Compliance struct {
	checks  []ComplianceCheck
	opts    ComplianceOptions
	log     *slog.Logger
	trigger chan struct{}
	trans   chan ComplianceTransition

	checkMu sync.Mutex // one check at a time

	mu sync.Mutex
	st ComplianceStatus
	bg routine.Loop

	checksN, drifts, repairs, repairFailures, checkErrors, dropped atomic.Uint64
}

// NewCompliance returns a Compliance of checks. Nothing runs until Start
// or CheckOnce.
func NewCompliance(checks []ComplianceCheck, opts ComplianceOptions) *Compliance {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Compliance{
		checks: slices.Clone(checks), opts: opts, log: opts.Logger,
		trigger: make(chan struct{}, 1),
		trans:   make(chan ComplianceTransition, transitionQueue),
		st:      ComplianceStatus{Compliant: true},
	}
}

// Transitions returns the channel of compliance transitions, for one
// reader (process measurement: out since T, back at T2 after a time).
// It holds up to 64 unread; more are dropped and counted (Dropped). It
// is never closed.
func (c *Compliance) Transitions() <-chan ComplianceTransition { return c.trans }

// Trigger asks for a check soon (after an apply). It never blocks.
func (c *Compliance) Trigger() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// Start runs the checks in a goroutine until ctx ends or Close: one at
// once, then every Interval and on each Trigger. Calling it again, or
// after Close, does nothing.
func (c *Compliance) Start(ctx context.Context) {
	c.bg.Start(ctx, c.loop)
}

// Close stops the loop and waits for it. Idempotent; returns nil.
func (c *Compliance) Close() error {
	c.bg.Close()
	return nil
}

func (c *Compliance) loop(ctx context.Context) {
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		if _, err := c.CheckOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("compliance check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.trigger:
		}
	}
}

// CheckOnce runs every check; a part that drifted is reported, repaired
// and checked again. It returns the status after it. The error joins
// what failed (a check that could not read, a repair that failed); a
// check that cannot read the state counts as drift, since what is
// enforced cannot be shown.
func (c *Compliance) CheckOnce(ctx context.Context) (ComplianceStatus, error) {
	c.checkMu.Lock()
	defer c.checkMu.Unlock()
	c.checksN.Add(1)
	reasons, drifted, errs := c.run(ctx, c.checks)
	if len(reasons) == 0 {
		c.record(c.opts.Now(), nil)
		return c.Status(), nil
	}
	c.drifts.Add(1)
	c.record(c.opts.Now(), reasons)
	c.log.Warn("out of compliance", "reasons", reasons)
	var repaired []ComplianceCheck
	for _, ch := range drifted {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		c.repairs.Add(1)
		if err := ch.Repair(ctx); err != nil {
			c.repairFailures.Add(1)
			errs = append(errs, fmt.Errorf("repair %s: %w", ch.Name(), err))
			continue
		}
		repaired = append(repaired, ch)
	}
	// Check again, all of them: a repair may touch what another shows.
	after, _, errs2 := c.run(ctx, c.checks)
	errs = append(errs, errs2...)
	c.record(c.opts.Now(), after)
	if len(after) > 0 {
		c.log.Warn("still out of compliance after repair", "reasons", after)
	} else {
		c.log.Info("compliance restored", "repaired", len(repaired))
	}
	return c.Status(), joinErrs(errs)
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("compliance: %w", errors.Join(errs...))
}

// run runs checks and returns the reasons, prefixed with each check's
// name, and the checks that drifted.
func (c *Compliance) run(ctx context.Context, checks []ComplianceCheck) (reasons []string, drifted []ComplianceCheck, errs []error) {
	for _, ch := range checks {
		rs, err := ch.Drift(ctx)
		if err != nil {
			c.checkErrors.Add(1)
			errs = append(errs, fmt.Errorf("check %s: %w", ch.Name(), err))
			rs = []string{fmt.Sprintf("cannot read what is enforced: %v", err)}
		}
		if len(rs) == 0 {
			continue
		}
		drifted = append(drifted, ch)
		for _, r := range rs {
			reasons = append(reasons, ch.Name()+": "+r)
		}
	}
	return reasons, drifted, errs
}

// record sets the status at now from reasons (none: compliant) and
// reports a transition.
func (c *Compliance) record(now time.Time, reasons []string) {
	c.mu.Lock()
	st := &c.st
	st.CheckedAt = now
	var tr *ComplianceTransition
	switch {
	case len(reasons) > 0 && st.Compliant:
		st.Compliant, st.OutSince, st.Reasons = false, now, reasons
		tr = &ComplianceTransition{Compliant: false, At: now, OutSince: now, Reasons: reasons}
	case len(reasons) > 0:
		st.Reasons = reasons
	case !st.Compliant:
		tr = &ComplianceTransition{Compliant: true, At: now, OutSince: st.OutSince, Out: max(now.Sub(st.OutSince), 0), Reasons: st.Reasons}
		st.LastDrift = tr
		st.Compliant, st.OutSince, st.Reasons = true, time.Time{}, nil
	}
	c.mu.Unlock()
	if tr == nil {
		return
	}
	if c.opts.OnTransition != nil {
		c.opts.OnTransition(*tr)
	}
	select {
	case c.trans <- *tr:
	default:
		c.dropped.Add(1)
	}
}

// Status returns the compliance as of the last check.
func (c *Compliance) Status() ComplianceStatus {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	st.Reasons = slices.Clone(st.Reasons)
	if st.LastDrift != nil {
		d := *st.LastDrift
		st.LastDrift = &d
	}
	st.Checks, st.Drifts, st.Repairs = c.checksN.Load(), c.drifts.Load(), c.repairs.Load()
	st.RepairFailures, st.CheckErrors, st.Dropped = c.repairFailures.Load(), c.checkErrors.Load(), c.dropped.Load()
	return st
}
