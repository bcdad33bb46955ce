package responders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/routine"
)

// StateSource supplies the inputs of Desired. Its methods are called once
// per pass, from the pass's goroutine, and must not block for long.
type StateSource interface {
	// MeshPolicies returns the committed mesh-wide policies.
	MeshPolicies(now time.Time) []intel.Policy
	// LocalDecisions returns this node's own, time-bounded decisions.
	LocalDecisions(now time.Time) []intel.Policy
	// Protected returns the ranges no block may cover.
	Protected() []netip.Prefix
}

// DefaultInterval is the default period of the full resync.
const DefaultInterval = 30 * time.Second

// minRetry is the first delay before retrying a pass that failed; it
// doubles on each consecutive failure, up to the interval.
const minRetry = 250 * time.Millisecond

// Options tune a Reconciler. The zero value is usable.
type Options struct {
	// Interval is the period of the full resync (default 30s). Passes
	// also run on Trigger and when the earliest desired policy expires.
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives pass errors and changes (default: discard).
	Logger *slog.Logger
	// OnEnforced is called once for every indicator a backend accepted
	// in an Apply, with the time Apply returned: the "enforced" step of
	// the indicator's timeline. It runs inside the pass and must neither
	// block nor call ReconcileOnce.
	OnEnforced func(backend string, p intel.Policy, at time.Time)
}

// ReconcilerStats counts the reconciler's work.
type ReconcilerStats struct {
	Passes   uint64 // passes run
	Failures uint64 // passes in which at least one backend failed
	Added    uint64 // entries added, over all backends
	Removed  uint64 // entries removed, over all backends
	// BelowFloor counts desired entries dropped because a safety floor
	// refuses them (intel.Floors.CheckBlock: loopback, link-local,
	// unspecified, multicast, a public suffix), once per pass.
	BelowFloor uint64
}

// Reconciler drives backends towards the desired state.
type Reconciler struct {
	src      StateSource
	backends []Backend
	opts     Options
	log      *slog.Logger
	trigger  chan struct{}

	passMu sync.Mutex // one pass at a time

	mu      sync.Mutex
	started bool
	closed  bool
	group   *routine.Group // the loop, from Start

	passes, failures, added, removed, belowFloor atomic.Uint64
	perBackend                                   []backendCounters // parallel to backends
}

// BackendStats counts one backend's work in the reconciler.
type BackendStats struct {
	Applies  uint64 // Apply calls that succeeded
	Failures uint64 // failed Current or Apply calls
	Added    uint64 // entries added
	Removed  uint64 // entries removed
	// Refreshed counts held entries given a later expiry (Refresher).
	Refreshed uint64
}

type backendCounters struct {
	applies, failures, added, removed, refreshed atomic.Uint64
}

// NewReconciler returns a reconciler of backends, fed by src. Nothing runs
// until Start or ReconcileOnce.
func NewReconciler(src StateSource, backends []Backend, opts Options) *Reconciler {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		src:      src,
		backends: slices.Clone(backends),
		opts:     opts,
		log:      opts.Logger,
		trigger:  make(chan struct{}, 1),

		perBackend: make([]backendCounters, len(backends)),
	}
}

// Trigger asks for a pass soon. It never blocks, and triggers that arrive
// while one is pending coalesce into one pass.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Start runs the loop in a goroutine until ctx ends or Close is called:
// a pass at once, then one on every Trigger, every Interval, and at the
// earliest expiry among the desired policies. After a failed pass the
// next comes sooner, backing off from 250ms up to Interval. Calling Start
// again, or after Close, does nothing.
func (r *Reconciler) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	r.group = routine.New(ctx)
	r.group.Go(r.loop)
}

// Close stops the loop and waits for it, including a pass in progress
// (whose context it cancels). It is idempotent and always returns nil.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	r.closed = true
	g := r.group
	r.mu.Unlock()
	if g != nil {
		g.Close()
	}
	return nil
}

// Stats returns the reconciler's counters.
func (r *Reconciler) Stats() ReconcilerStats {
	return ReconcilerStats{
		Passes:   r.passes.Load(),
		Failures: r.failures.Load(),
		Added:    r.added.Load(),
		Removed:  r.removed.Load(),

		BelowFloor: r.belowFloor.Load(),
	}
}

// BackendStats returns each backend's counters, keyed by its Name.
func (r *Reconciler) BackendStats() map[string]BackendStats {
	out := make(map[string]BackendStats, len(r.backends))
	for i, b := range r.backends {
		c := &r.perBackend[i]
		out[b.Name()] = BackendStats{Applies: c.applies.Load(), Failures: c.failures.Load(), Added: c.added.Load(), Removed: c.removed.Load(), Refreshed: c.refreshed.Load()}
	}
	return out
}

func (r *Reconciler) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var backoff time.Duration
	for {
		next, err := r.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := r.opts.Interval
		if err != nil {
			r.log.Warn("reconcile failed", "err", err)
			backoff = min(max(2*backoff, minRetry), r.opts.Interval)
			wait = backoff
		} else {
			backoff = 0
		}
		if !next.IsZero() {
			if d := next.Sub(r.opts.Now()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-timer.C:
		}
	}
}

// ReconcileOnce runs one pass over every backend. A failing backend does
// not stop the others; their errors are joined.
func (r *Reconciler) ReconcileOnce(ctx context.Context) error {
	_, err := r.pass(ctx)
	return err
}

// pass reconciles every backend and returns the earliest expiry among the
// desired policies (zero if none expires).
func (r *Reconciler) pass(ctx context.Context) (time.Time, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	now := r.opts.Now()
	desired := Desired(now, r.src.MeshPolicies(now), r.src.LocalDecisions(now), r.src.Protected())
	r.dropBelowFloor(desired)
	var next time.Time
	for _, p := range desired {
		if !p.ExpiresAt.IsZero() && (next.IsZero() || p.ExpiresAt.Before(next)) {
			next = p.ExpiresAt
		}
	}
	var errs []error
	for i, b := range r.backends {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := r.reconcile(ctx, b, &r.perBackend[i], desired); err != nil {
			r.perBackend[i].failures.Add(1)
			errs = append(errs, fmt.Errorf("backend %s: %w", b.Name(), err))
		}
	}
	r.passes.Add(1)
	if len(errs) > 0 {
		r.failures.Add(1)
	}
	return next, errors.Join(errs...)
}

// floors are the safety floors held again here, whatever the policies
// say, so that a bug upstream cannot block loopback. Breadth is not
// checked (wide): the FSM decided it, and an admin may block wide.
var floors = intel.DefaultFloors()

// dropBelowFloor deletes from desired the blocks a safety floor refuses,
// counting and logging each.
func (r *Reconciler) dropBelowFloor(desired map[string]intel.Policy) {
	for k, p := range desired {
		if p.Action != intel.ActionBlock {
			continue
		}
		if err := floors.CheckBlock(p.Indicator, true); err != nil {
			delete(desired, k)
			r.belowFloor.Add(1)
			r.log.Debug("desired block dropped by a safety floor", "policy", p.ID, "indicator", p.Indicator.Value, "err", err)
		}
	}
}

// reconcile brings one backend to desired.
func (r *Reconciler) reconcile(ctx context.Context, b Backend, c *backendCounters, desired map[string]intel.Policy) error {
	cur, err := b.Current(ctx)
	if err != nil {
		return fmt.Errorf("read current entries: %w", err)
	}
	filter, _ := b.(TypeFilter)
	var add []intel.Policy
	for k, p := range desired {
		if filter != nil && !filter.Supports(p.Indicator.Type) {
			continue
		}
		if _, ok := cur[k]; !ok {
			add = append(add, p)
		}
	}
	var remove []intel.Indicator
	for k, ind := range cur {
		if _, ok := desired[k]; !ok {
			remove = append(remove, ind)
		}
	}
	if rf, ok := b.(Refresher); ok {
		// Entries already held may need a later expiry than the backend
		// gave them (a policy extended since); only the backend knows.
		var held []intel.Policy
		for k, p := range desired {
			if _, ok := cur[k]; ok {
				held = append(held, p)
			}
		}
		n, err := rf.Refresh(ctx, held)
		if err != nil {
			return fmt.Errorf("refresh %d held entries: %w", len(held), err)
		}
		if n > 0 {
			c.refreshed.Add(uint64(n))
			r.log.Debug("refreshed", "backend", b.Name(), "entries", n)
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
	slices.SortFunc(add, func(a, b intel.Policy) int { return cmp.Compare(a.Indicator.Key(), b.Indicator.Key()) })
	slices.SortFunc(remove, func(a, b intel.Indicator) int { return cmp.Compare(a.Key(), b.Key()) })
	if err := b.Apply(ctx, add, remove); err != nil {
		return fmt.Errorf("apply %d additions and %d removals: %w", len(add), len(remove), err)
	}
	at := r.opts.Now()
	r.added.Add(uint64(len(add)))
	r.removed.Add(uint64(len(remove)))
	c.applies.Add(1)
	c.added.Add(uint64(len(add)))
	c.removed.Add(uint64(len(remove)))
	r.log.Debug("reconciled", "backend", b.Name(), "added", len(add), "removed", len(remove))
	if r.opts.OnEnforced != nil {
		for _, p := range add {
			r.opts.OnEnforced(b.Name(), p, at)
		}
	}
	return nil
}
