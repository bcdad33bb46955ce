package responders

import (
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

// StateSource supplies the inputs of the desired state. Its methods are
// called from the pass's goroutine and must not block for long.
type StateSource interface {
	// MeshPolicies returns the committed mesh-wide policies. A source
	// that is also a ChangeFeed is not asked for them.
	MeshPolicies(now time.Time) []intel.Policy
	// LocalDecisions returns this node's own, time-bounded decisions.
	LocalDecisions(now time.Time) []intel.Policy
	// Protected returns the ranges no block may cover.
	Protected() []netip.Prefix
}

// MeshChange is one change to the mesh-wide policies: a policy committed
// (or changed), or removed.
type MeshChange struct {
	Seq     uint64
	Policy  intel.Policy
	Removed bool
}

// ChangeFeed is an optional interface of a StateSource whose mesh-wide
// policies can be followed change by change, so that a pass costs what
// changed rather than what the mesh holds.
type ChangeFeed interface {
	// MeshChanges returns up to limit changes after position since,
	// oldest first, and the position to pass next. ok is false when the
	// changes after since are no longer all held: the reader then reads
	// the policies whole through MeshPage and continues from next.
	MeshChanges(since uint64, limit int) (changes []MeshChange, next uint64, ok bool)
	// MeshPage returns up to limit active mesh-wide policies with IDs
	// greater than after, in ID order, and the cursor of the next page
	// ("" at the end).
	MeshPage(after string, limit int, now time.Time) (page []intel.Policy, next string)
	// MeshCount is about how many mesh-wide policies there are: a hint
	// that sizes a first read.
	MeshCount() int
}

// Feed read sizes: changes per MeshChanges call, policies per MeshPage.
const (
	changeBatch = 1000
	pageSize    = 10_000
)

// DefaultInterval is the default period of the full pass.
const DefaultInterval = 30 * time.Second

// minRetry is the first delay before retrying a pass that failed; it
// doubles on each consecutive failure, up to the interval.
const minRetry = 250 * time.Millisecond

// Options tune a Reconciler. The zero value is usable.
type Options struct {
	// Interval is the period of the full pass (default 30s), the safety
	// net that compares the desired state with what every backend holds
	// and repairs any difference. Passes between full ones, on Trigger
	// and when a held policy expires, hand backends only what changed.
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
	Passes     uint64 // passes run
	FullPasses uint64 // of which full passes (compared with every backend's state)
	Failures   uint64 // passes in which at least one backend failed
	Added      uint64 // entries added, over all backends
	Removed    uint64 // entries removed, over all backends
	// BelowFloor counts desired entries dropped because a safety floor
	// refuses them (intel.Floors.CheckBlock: loopback, link-local,
	// unspecified, multicast, a public suffix), each time the entry is
	// computed: when one of its policies changes, or the veto does.
	BelowFloor uint64
	// MeshChanges counts the mesh-wide policy changes taken from a
	// ChangeFeed; MeshResyncs the times the feed could not continue and
	// the mesh-wide policies were read whole.
	MeshChanges uint64
	MeshResyncs uint64
}

// Reconciler drives backends towards the desired state. It keeps the
// desired state itself, indexed by indicator, and follows the source's
// changes: a pass between full ones costs what changed since the last
// one, not what the source holds (given a ChangeFeed; a source without
// one is read whole on every pass and compared with what is held).
type Reconciler struct {
	src      StateSource
	feed     ChangeFeed // src's, or nil
	backends []Backend
	opts     Options
	log      *slog.Logger
	trigger  chan struct{}

	passMu sync.Mutex // one pass at a time; guards the fields below it
	state  *desiredState
	since  uint64 // feed position
	// stale[i]: backend i may not hold what the desired state says (a
	// failed call, or no full pass yet); its next pass compares in full.
	stale []bool

	bg routine.Loop // the loop, from Start

	passes, fullPasses, failures, added, removed, belowFloor atomic.Uint64
	meshChanges, meshResyncs                                 atomic.Uint64
	perBackend                                               []backendCounters // parallel to backends
}

// BackendStats counts one backend's work in the reconciler.
type BackendStats struct {
	Applies  uint64 // Apply calls that succeeded
	Failures uint64 // failed Current, Compare, Refresh or Apply calls
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
	feed, _ := src.(ChangeFeed)
	stale := make([]bool, len(backends))
	for i := range stale {
		stale[i] = true
	}
	return &Reconciler{
		src:      src,
		feed:     feed,
		backends: slices.Clone(backends),
		opts:     opts,
		log:      opts.Logger,
		trigger:  make(chan struct{}, 1),
		state:    newDesiredState(opts.Logger),
		stale:    stale,

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
// a full pass at once, then one every Interval; in between, a pass on
// every Trigger and at the earliest expiry among the held policies. After
// a failed pass the next comes sooner, backing off from 250ms up to
// Interval. Calling Start again, or after Close, does nothing.
func (r *Reconciler) Start(ctx context.Context) {
	r.bg.Start(ctx, r.loop)
}

// Close stops the loop and waits for it, including a pass in progress
// (whose context it cancels). It is idempotent and always returns nil.
func (r *Reconciler) Close() error {
	r.bg.Close()
	return nil
}

// Stats returns the reconciler's counters.
func (r *Reconciler) Stats() ReconcilerStats {
	return ReconcilerStats{
		Passes:     r.passes.Load(),
		FullPasses: r.fullPasses.Load(),
		Failures:   r.failures.Load(),
		Added:      r.added.Load(),
		Removed:    r.removed.Load(),

		BelowFloor:  r.belowFloor.Load(),
		MeshChanges: r.meshChanges.Load(),
		MeshResyncs: r.meshResyncs.Load(),
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
	full := time.NewTimer(r.opts.Interval)
	defer full.Stop()
	soon := time.NewTimer(time.Hour)
	defer soon.Stop()
	var backoff time.Duration
	fullDue := true
	for {
		next, err := r.pass(ctx, fullDue)
		if ctx.Err() != nil {
			return
		}
		if fullDue {
			full.Reset(r.opts.Interval)
			fullDue = false
		}
		// soon is armed for a retry or the next expiry; otherwise the
		// next pass is a Trigger's or the full one.
		wait := time.Duration(-1)
		if err != nil {
			r.log.Warn("reconcile failed", "err", err)
			backoff = min(max(2*backoff, minRetry), r.opts.Interval)
			wait = backoff
		} else {
			backoff = 0
		}
		if !next.IsZero() {
			if d := next.Sub(r.opts.Now()); wait < 0 || d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		if wait >= 0 {
			soon.Reset(wait)
		} else {
			soon.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-soon.C:
		case <-full.C:
			fullDue = true
		}
	}
}

// ReconcileOnce runs one full pass over every backend: it takes in the
// source's changes, then compares the desired state with what each
// backend holds and applies the difference. A failing backend does not
// stop the others; their errors are joined.
func (r *Reconciler) ReconcileOnce(ctx context.Context) error {
	_, err := r.pass(ctx, true)
	return err
}

// pass takes in what changed and reconciles every backend: in full (a
// comparison with what it holds) when full is set or the backend is
// stale, otherwise by handing it the change alone. It returns the
// earliest expiry among the held policies (zero if none expires).
func (r *Reconciler) pass(ctx context.Context, full bool) (time.Time, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	now := r.opts.Now()
	st := r.state
	st.expire(now)
	r.readMesh(now)
	st.resync(true, r.src.LocalDecisions(now), now)
	st.setProtected(r.src.Protected())
	// The lists of the change are built only for backends that take it.
	d := st.settle(!full && slices.Contains(r.stale, false))
	r.belowFloor.Add(uint64(d.belowFloor))
	var errs []error
	for i, b := range r.backends {
		if err := ctx.Err(); err != nil {
			for j := i; j < len(r.backends); j++ {
				r.stale[j] = true // it missed this pass's change
			}
			errs = append(errs, err)
			break
		}
		c := &r.perBackend[i]
		var err error
		if full || r.stale[i] {
			err = r.reconcile(ctx, b, c, r.stale[i], d.refresh)
		} else {
			err = r.applyDelta(ctx, b, c, d)
		}
		r.stale[i] = err != nil
		if err != nil {
			c.failures.Add(1)
			errs = append(errs, fmt.Errorf("backend %s: %w", b.Name(), err))
		}
	}
	r.passes.Add(1)
	if full {
		r.fullPasses.Add(1)
	}
	if len(errs) > 0 {
		r.failures.Add(1)
	}
	return st.nextExpiry(), errors.Join(errs...)
}

// readMesh takes in the mesh-wide policies: the changes since the last
// pass from a ChangeFeed (reading the policies whole, page by page, when
// the feed cannot continue), or else the whole list.
func (r *Reconciler) readMesh(now time.Time) {
	st := r.state
	if r.feed == nil {
		st.resync(false, r.src.MeshPolicies(now), now)
		return
	}
	for {
		changes, next, ok := r.feed.MeshChanges(r.since, changeBatch)
		if !ok {
			// Continue from next once the policies are read: a change
			// the pages already show is then taken in twice, which
			// changes nothing.
			r.since = next
			r.resyncMesh(now)
			return
		}
		for _, ch := range changes {
			if ch.Removed {
				st.remove(ch.Policy.ID, false)
			} else {
				st.put(ch.Policy, false, now)
			}
		}
		r.meshChanges.Add(uint64(len(changes)))
		r.since = next
		if len(changes) < changeBatch {
			return
		}
	}
}

// resyncMesh reads the mesh-wide policies whole from the feed's pages.
func (r *Reconciler) resyncMesh(now time.Time) {
	rs := r.state.beginResync(false, now, r.feed.MeshCount())
	after, n := "", 0
	for {
		page, next := r.feed.MeshPage(after, pageSize, now)
		rs.take(page)
		n += len(page)
		if next == "" || len(page) == 0 {
			break
		}
		after = next
	}
	rs.end()
	r.meshResyncs.Add(1)
	r.log.Debug("mesh-wide policies read whole", "policies", n)
}

// floors are the safety floors held again here, whatever the policies
// say, so that a bug upstream cannot block loopback. Breadth is not
// checked (wide): the FSM decided it, and an admin may block wide.
var floors = intel.DefaultFloors()

// Comparer is an optional interface for a backend that can compare the
// desired state with what it holds without copying what it holds (as
// Current must). A full pass then asks it instead of Current.
type Comparer interface {
	// Compare returns the desired entries of supported types the
	// backend does not hold (add), the entries it holds that are not
	// desired (remove), and, for a Refresher, the desired policies of
	// held entries whose expiry it would extend (refresh), each in any
	// order. Unless desired.Thorough(), it may answer from digests:
	// extensions reach a backend as changes, and a failed change makes
	// the next comparison thorough.
	Compare(ctx context.Context, desired DesiredSet) (add []intel.Policy, remove []intel.Indicator, refresh []intel.Policy, err error)
}

// reconcile brings one backend to the desired state by comparing it with
// what the backend holds. stale: a change handed to it failed since the
// last comparison. changed are the desired policies of this pass whose
// keys were already desired (extensions): a Comparer answering from
// digests sees keys, not expiries, so they are handed on as refreshes.
func (r *Reconciler) reconcile(ctx context.Context, b Backend, c *backendCounters, stale bool, changed []intel.Policy) error {
	var add, refresh []intel.Policy
	var remove []intel.Indicator
	desired := DesiredSet{s: r.state, thorough: stale}
	if cmpr, ok := b.(Comparer); ok {
		var err error
		add, remove, refresh, err = cmpr.Compare(ctx, desired)
		if err != nil {
			return fmt.Errorf("compare with the desired state: %w", err)
		}
		refresh = append(refresh, changed...)
		if filter, ok := b.(TypeFilter); ok { // the lists are the backend's own: filtered in place
			drop := func(p intel.Policy) bool { return !filter.Supports(p.Indicator.Type) }
			add = slices.DeleteFunc(add, drop)
			refresh = slices.DeleteFunc(refresh, drop)
			remove = slices.DeleteFunc(remove, func(ind intel.Indicator) bool { return !filter.Supports(ind.Type) })
		}
	} else {
		cur, err := b.Current(ctx)
		if err != nil {
			return fmt.Errorf("read current entries: %w", err)
		}
		filter, _ := b.(TypeFilter)
		_, refresher := b.(Refresher)
		if len(cur) == 0 {
			add = make([]intel.Policy, 0, desired.Len())
		}
		st := r.state
		var buf [64]byte
		for k := range desired.keys() {
			if filter != nil && !filter.Supports(st.keyType(k)) {
				continue
			}
			// The key is looked up in bytes, and the policy rebuilt only
			// when it is handed on: a pass over entries already held
			// allocates nothing.
			_, held := cur[string(st.appendKey(buf[:0], k))]
			switch {
			case !held:
				add = append(add, st.policy(st.keys.at(k).desired))
			case refresher:
				// Entries already held may need a later expiry than the
				// backend gave them (a policy extended since); only the
				// backend knows.
				refresh = append(refresh, st.policy(st.keys.at(k).desired))
			}
		}
		for k, ind := range cur {
			if !desired.Has(k) {
				remove = append(remove, ind)
			}
		}
	}
	sortPolicies(add)
	sortIndicators(remove)
	return r.apply(ctx, b, c, add, remove, refresh)
}

// applyDelta hands one backend the change of a pass, as far as it
// supports the indicators' types.
func (r *Reconciler) applyDelta(ctx context.Context, b Backend, c *backendCounters, d delta) error {
	add, remove, refresh := d.add, d.remove, d.refresh
	if filter, ok := b.(TypeFilter); ok {
		keep := func(t intel.IndicatorType) bool { return filter.Supports(t) }
		add = filterPolicies(add, keep)
		refresh = filterPolicies(refresh, keep)
		remove = slices.DeleteFunc(slices.Clone(remove), func(ind intel.Indicator) bool { return !keep(ind.Type) })
	}
	return r.apply(ctx, b, c, add, remove, refresh)
}

func filterPolicies(ps []intel.Policy, keep func(intel.IndicatorType) bool) []intel.Policy {
	return slices.DeleteFunc(slices.Clone(ps), func(p intel.Policy) bool { return !keep(p.Indicator.Type) })
}

// apply refreshes the held entries of refresh (for a Refresher), then
// applies add and remove, counting and reporting the change.
func (r *Reconciler) apply(ctx context.Context, b Backend, c *backendCounters, add []intel.Policy, remove []intel.Indicator, refresh []intel.Policy) error {
	if rf, ok := b.(Refresher); ok && len(refresh) > 0 {
		n, err := rf.Refresh(ctx, refresh)
		if err != nil {
			return fmt.Errorf("refresh %d held entries: %w", len(refresh), err)
		}
		if n > 0 {
			c.refreshed.Add(uint64(n))
			r.log.Debug("refreshed", "backend", b.Name(), "entries", n)
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
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
