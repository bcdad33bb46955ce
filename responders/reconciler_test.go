package responders_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// state is a StateSource the test edits.
type state struct {
	mu          sync.Mutex
	mesh, local []intel.Policy
	protected   []netip.Prefix
}

func (s *state) MeshPolicies(time.Time) []intel.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intel.Policy(nil), s.mesh...)
}

func (s *state) LocalDecisions(time.Time) []intel.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intel.Policy(nil), s.local...)
}

func (s *state) Protected() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Prefix(nil), s.protected...)
}

func (s *state) setMesh(p ...intel.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mesh = p
}

// clock is an injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// enforced records OnEnforced calls.
type enforced struct {
	mu    sync.Mutex
	calls []string
}

func (e *enforced) record(backend string, p intel.Policy, _ time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, backend+" "+p.Indicator.Key())
}

func (e *enforced) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

// failing is a backend whose every call fails.
type failing struct{ calls atomic.Int32 }

var errBoom = errors.New("boom")

func (f *failing) Name() string { return "failing" }
func (f *failing) Current(context.Context) (map[string]intel.Indicator, error) {
	f.calls.Add(1)
	return nil, errBoom
}
func (f *failing) Apply(context.Context, []intel.Policy, []intel.Indicator) error { return errBoom }

// v4only enforces IPv4 only.
type v4only struct{ *responders.DryRun }

func (v4only) Supports(t intel.IndicatorType) bool { return t == intel.IPv4 }

// waitFor polls cond until it holds; the deadline only bounds a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReconcileAddsAndRemoves(t *testing.T) {
	a, b, stale := mustInd(t, "203.0.113.7"), mustInd(t, "2001:db8::7"), mustInd(t, "198.51.100.1")
	dry := responders.NewDryRun(nil)
	if err := dry.Apply(t.Context(), blocks(t0, stale), nil); err != nil {
		t.Fatal(err)
	}
	src := &state{mesh: blocks(t0, a), local: blocks(t0, b)}
	var rec enforced
	clk := &clock{t: t0}
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{Now: clk.Now, OnEnforced: rec.record})
	defer r.Close()

	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := dry.Blocked(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("blocked %v, want [%v %v]", got, a, b)
	}
	want := []string{"dry-run ipv4:203.0.113.7", "dry-run ipv6:2001:db8::7"}
	if got := rec.get(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("OnEnforced calls %v, want %v", got, want)
	}
	// A second pass finds nothing to do and reports no enforcement.
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rec.get(); len(got) != 2 {
		t.Fatalf("OnEnforced called again on an idle pass: %v", got)
	}
	if st := r.Stats(); st.Passes != 2 || st.Added != 2 || st.Removed != 1 || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A policy that goes away is removed.
	src.setMesh()
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if dry.Has(a) || !dry.Has(b) {
		t.Fatalf("blocked %v after the mesh policy was withdrawn", dry.Blocked())
	}
}

func TestProtectedNeverReachesBackend(t *testing.T) {
	dry := responders.NewDryRun(nil)
	src := &state{mesh: blocks(t0, mustInd(t, "10.0.0.5")), protected: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := dry.Blocked(); len(got) != 0 {
		t.Fatalf("protected address blocked: %v", got)
	}
}

func TestDriftHeals(t *testing.T) {
	a := mustInd(t, "203.0.113.7")
	dry := responders.NewDryRun(nil)
	src := &state{mesh: blocks(time.Now(), a)}
	var rec enforced
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{Interval: 10 * time.Millisecond, OnEnforced: rec.record})
	defer r.Close()
	r.Start(t.Context())
	waitFor(t, "first enforcement", func() bool { return dry.Has(a) })

	// Someone flushes the entry behind the loop's back.
	if err := dry.Apply(t.Context(), nil, []intel.Indicator{a}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entry to be restored", func() bool { return dry.Has(a) && len(rec.get()) == 2 })
}

func TestTriggerRunsPass(t *testing.T) {
	a := mustInd(t, "203.0.113.7")
	dry := responders.NewDryRun(nil)
	src := &state{}
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{Interval: time.Hour})
	defer r.Close()
	r.Start(t.Context())
	waitFor(t, "the first pass", func() bool { return r.Stats().Passes >= 1 })
	src.setMesh(blocks(time.Now(), a)...)
	for range 100 { // coalesces; never blocks
		r.Trigger()
	}
	waitFor(t, "the triggered pass", func() bool { return dry.Has(a) })
}

func TestExpiryWithInjectedClock(t *testing.T) {
	a, b := mustInd(t, "203.0.113.7"), mustInd(t, "203.0.113.8")
	clk := &clock{t: t0}
	short := intel.NewPolicy(intel.ActionBlock, a, "", "operator:test", t0, time.Minute)
	long := intel.NewPolicy(intel.ActionBlock, b, "", "operator:test", t0, time.Hour)
	dry := responders.NewDryRun(nil)
	r := responders.NewReconciler(&state{mesh: []intel.Policy{short, long}}, []responders.Backend{dry}, responders.Options{Now: clk.Now})
	defer r.Close()
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !dry.Has(a) || !dry.Has(b) {
		t.Fatalf("blocked %v", dry.Blocked())
	}
	clk.Advance(time.Minute)
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if dry.Has(a) || !dry.Has(b) {
		t.Fatalf("after the short policy expired, blocked %v", dry.Blocked())
	}
}

// expiresAfterFirstLook is a StateSource with one local block that expires
// ttl after the first pass looks at it: however late that pass runs, it
// sees the block active.
type expiresAfterFirstLook struct {
	ind intel.Indicator
	ttl time.Duration

	mu sync.Mutex
	p  *intel.Policy
}

func (s *expiresAfterFirstLook) policy(now time.Time) intel.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		p := intel.NewPolicy(intel.ActionBlock, s.ind, "", "operator:test", now, s.ttl)
		s.p = &p
	}
	return *s.p
}

func (s *expiresAfterFirstLook) MeshPolicies(time.Time) []intel.Policy { return nil }
func (s *expiresAfterFirstLook) LocalDecisions(now time.Time) []intel.Policy {
	return []intel.Policy{s.policy(now)}
}
func (s *expiresAfterFirstLook) Protected() []netip.Prefix { return nil }

// removalClock is a dry run that records when watch was removed.
type removalClock struct {
	*responders.DryRun
	watch intel.Indicator

	mu      sync.Mutex
	removed time.Time
}

func (b *removalClock) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	for _, ind := range remove {
		if ind == b.watch {
			b.mu.Lock()
			b.removed = time.Now()
			b.mu.Unlock()
		}
	}
	return b.DryRun.Apply(ctx, add, remove)
}

func (b *removalClock) removedAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.removed
}

// TestExpiryWithoutTrigger runs the loop with an hour-long interval: only
// the loop's own expiry timer can remove the entry. The block must first
// be enforced, then removed no earlier than its expiry.
func TestExpiryWithoutTrigger(t *testing.T) {
	a := mustInd(t, "203.0.113.7")
	src := &expiresAfterFirstLook{ind: a, ttl: 500 * time.Millisecond}
	dry := &removalClock{DryRun: responders.NewDryRun(nil), watch: a}
	enforcedc := make(chan bool, 1)
	r := responders.NewReconciler(src, []responders.Backend{dry}, responders.Options{
		Interval: time.Hour,
		OnEnforced: func(_ string, p intel.Policy, _ time.Time) {
			if p.Indicator == a {
				select {
				case enforcedc <- dry.Has(a):
				default:
				}
			}
		},
	})
	defer r.Close()
	r.Start(t.Context())
	select {
	case held := <-enforcedc:
		if !held {
			t.Fatal("enforcement reported, but the backend does not hold the block")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the block was never enforced")
	}
	waitFor(t, "expiry", func() bool { return !dry.Has(a) })
	if removed, expires := dry.removedAt(), src.policy(time.Now()).ExpiresAt; removed.Before(expires) {
		t.Fatalf("the block was removed at %v, before its expiry at %v", removed, expires)
	}
	if n := r.Stats().Passes; n < 2 || n > 5 {
		t.Fatalf("%d passes, want a handful", n)
	}
}

func TestFailingBackendDoesNotStopOthers(t *testing.T) {
	a := mustInd(t, "203.0.113.7")
	bad, dry := &failing{}, responders.NewDryRun(nil)
	r := responders.NewReconciler(&state{mesh: blocks(t0, a)}, []responders.Backend{bad, dry}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	err := r.ReconcileOnce(t.Context())
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "backend failing") {
		t.Fatalf("err = %v, want the failing backend's error", err)
	}
	if !dry.Has(a) {
		t.Fatal("healthy backend not reconciled")
	}
	if st := r.Stats(); st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
	bs := r.BackendStats()
	if bs["failing"].Failures != 1 || bs["failing"].Applies != 0 {
		t.Errorf("failing backend stats %+v", bs["failing"])
	}
	if bs["dry-run"].Failures != 0 || bs["dry-run"].Applies != 1 || bs["dry-run"].Added != 1 {
		t.Errorf("dry-run backend stats %+v", bs["dry-run"])
	}
}

func TestFailingBackendRetriedSooner(t *testing.T) {
	bad := &failing{}
	r := responders.NewReconciler(&state{}, []responders.Backend{bad}, responders.Options{Interval: time.Hour})
	defer r.Close()
	r.Start(t.Context())
	waitFor(t, "a retry", func() bool { return bad.calls.Load() >= 2 })
}

func TestTypeFilter(t *testing.T) {
	v4, v6 := mustInd(t, "203.0.113.7"), mustInd(t, "2001:db8::7")
	b := v4only{responders.NewDryRun(nil)}
	var rec enforced
	r := responders.NewReconciler(&state{mesh: blocks(t0, v4, v6)}, []responders.Backend{b}, responders.Options{Now: (&clock{t: t0}).Now, OnEnforced: rec.record})
	defer r.Close()
	for range 3 {
		if err := r.ReconcileOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if b.Has(v6) || !b.Has(v4) {
		t.Fatalf("blocked %v", b.Blocked())
	}
	if got := rec.get(); len(got) != 1 {
		t.Fatalf("OnEnforced calls %v, want one", got)
	}
}

// blocking is a backend whose Apply waits for its context.
type blocking struct {
	*responders.DryRun
	entered  chan struct{}
	returned atomic.Bool
}

func (b *blocking) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	close(b.entered)
	<-ctx.Done()
	b.returned.Store(true)
	return ctx.Err()
}

func TestCloseWaits(t *testing.T) {
	b := &blocking{DryRun: responders.NewDryRun(nil), entered: make(chan struct{})}
	r := responders.NewReconciler(&state{mesh: blocks(time.Now(), mustInd(t, "203.0.113.7"))}, []responders.Backend{b}, responders.Options{})
	r.Start(t.Context())
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Apply never called")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !b.returned.Load() {
		t.Fatal("Close returned before the pass in progress ended")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	r.Start(t.Context()) // after Close: does nothing
	r.Trigger()
}

func TestStartStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := responders.NewReconciler(&state{}, []responders.Backend{responders.NewDryRun(nil)}, responders.Options{Interval: time.Millisecond})
	r.Start(ctx)
	waitFor(t, "passes", func() bool { return r.Stats().Passes >= 3 })
	cancel()
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung after the context ended")
	}
}
