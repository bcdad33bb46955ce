package responders_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// feed is a StateSource with a change feed, as the node's is over the
// consensus: policies by ID and a log of changes from position first on.
// It counts the reads that cost what the mesh holds.
type feed struct {
	mu        sync.Mutex
	policies  map[string]intel.Policy
	log       []responders.MeshChange // Seq first, first+1, ...
	first     uint64                  // Seq of log[0]; changes before it are lost
	head      uint64                  // last Seq
	local     []intel.Policy
	protected []netip.Prefix

	pages, pageItems, wholeReads, changeReads int

	sorted []string // the IDs of policies, sorted; nil when stale
}

var _ responders.ChangeFeed = (*feed)(nil)

// newFeed holds ps with the changes that brought them lost: a reader
// starting from 0 must read the pages.
func newFeed(ps ...intel.Policy) *feed {
	f := &feed{policies: map[string]intel.Policy{}, first: 1}
	for _, p := range ps {
		f.policies[p.ID] = p
		f.head++
	}
	f.first = f.head + 1
	return f
}

func (f *feed) MeshPolicies(time.Time) []intel.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wholeReads++
	var out []intel.Policy
	for _, p := range f.policies {
		out = append(out, p)
	}
	return out
}

func (f *feed) LocalDecisions(now time.Time) []intel.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []intel.Policy
	for _, p := range f.local {
		if p.Active(now) {
			out = append(out, p)
		}
	}
	return out
}

func (f *feed) Protected() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.protected)
}

func (f *feed) MeshChanges(since uint64, limit int) ([]responders.MeshChange, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changeReads++
	if since+1 < f.first {
		return nil, f.head, false
	}
	i := int(since + 1 - f.first)
	j := min(len(f.log), i+limit)
	if i >= j {
		return nil, since, true
	}
	out := slices.Clone(f.log[i:j])
	return out, out[len(out)-1].Seq, true
}

func (f *feed) MeshCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.policies)
}

func (f *feed) MeshPage(after string, limit int, now time.Time) ([]intel.Policy, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages++
	if f.sorted == nil {
		for id := range f.policies {
			f.sorted = append(f.sorted, id)
		}
		slices.Sort(f.sorted)
	}
	i, _ := slices.BinarySearch(f.sorted, after)
	for i < len(f.sorted) && f.sorted[i] <= after {
		i++
	}
	var out []intel.Policy
	next := ""
	for ; i < len(f.sorted) && len(out) < limit; i++ {
		if p := f.policies[f.sorted[i]]; p.Active(now) {
			out = append(out, p)
		}
	}
	if i < len(f.sorted) {
		next = out[len(out)-1].ID
	}
	f.pageItems += len(out)
	return out, next
}

// commit records p as committed.
func (f *feed) commit(ps ...intel.Policy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range ps {
		f.policies[p.ID] = p
		f.head++
		f.log = append(f.log, responders.MeshChange{Seq: f.head, Policy: p})
	}
	f.sorted = nil
}

// revoke records p as removed.
func (f *feed) revoke(p intel.Policy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.policies, p.ID)
	f.sorted = nil
	f.head++
	f.log = append(f.log, responders.MeshChange{Seq: f.head, Policy: p, Removed: true})
}

// lose drops the log (a restored snapshot): changes made from now until
// the next commit are invisible to the feed, only to pages.
func (f *feed) lose(edit func(map[string]intel.Policy)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	edit(f.policies)
	f.sorted = nil
	f.head += 10
	f.log, f.first = nil, f.head+1
}

func (f *feed) reads() (pages, whole int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pages, f.wholeReads
}

func (f *feed) setProtected(ps ...netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.protected = ps
}

// recorder is a dry run that records every call.
type recorder struct {
	*responders.DryRun
	mu                  sync.Mutex
	currents, applies   int
	lastAdd, lastRemove []string
	fail                bool
}

func newRecorder() *recorder { return &recorder{DryRun: responders.NewDryRun(nil)} }

func (b *recorder) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	b.mu.Lock()
	b.currents++
	b.mu.Unlock()
	return b.DryRun.Current(ctx)
}

// Compare counts as a Current call: both ask the backend what it holds.
func (b *recorder) Compare(ctx context.Context, desired responders.DesiredSet) ([]intel.Policy, []intel.Indicator, []intel.Policy, error) {
	b.mu.Lock()
	b.currents++
	b.mu.Unlock()
	return b.DryRun.Compare(ctx, desired)
}

func (b *recorder) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	b.mu.Lock()
	b.applies++
	b.lastAdd, b.lastRemove = nil, nil
	for _, p := range add {
		b.lastAdd = append(b.lastAdd, p.Indicator.Key())
	}
	for _, ind := range remove {
		b.lastRemove = append(b.lastRemove, ind.Key())
	}
	fail := b.fail
	b.mu.Unlock()
	if fail {
		return errBoom
	}
	return b.DryRun.Apply(ctx, add, remove)
}

func (b *recorder) counts() (currents, applies int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.currents, b.applies
}

func (b *recorder) last() (add, remove string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lastAdd, ","), strings.Join(b.lastRemove, ",")
}

func addrBlocks(t testing.TB, n int, created time.Time, ttl time.Duration) []intel.Policy {
	t.Helper()
	out := make([]intel.Policy, n)
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		out[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "test", "operator:test", created, ttl)
	}
	return out
}

func mustPass(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A pass on a change hands the backend that change alone: the source is
// not read whole, the backend is not asked what it holds, and the
// enforcement is reported once.
func TestDeltaPassCostsTheChange(t *testing.T) {
	src := newFeed(addrBlocks(t, 2500, t0, time.Hour)...)
	b := newRecorder()
	var rec enforced
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: (&clock{t: t0}).Now, OnEnforced: rec.record})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context())) // lost changes: read in pages
	if pages, whole := src.reads(); pages != 1 || whole != 0 || len(b.Blocked()) != 2500 {
		t.Fatalf("first pass: %d pages, %d whole reads, %d blocked; want 1, 0, 2500", pages, whole, len(b.Blocked()))
	}
	cur0, app0 := b.counts()

	extra := pol(t, intel.ActionBlock, "203.0.113.50", t0, time.Hour)
	gone := addrBlocks(t, 1, t0, time.Hour)[0]
	src.commit(extra)
	src.revoke(gone)
	mustPass(t, r.DeltaPass(t.Context()))

	if pages, whole := src.reads(); pages != 1 || whole != 0 {
		t.Errorf("the change pass read the source whole: %d pages, %d whole reads", pages, whole)
	}
	cur, app := b.counts()
	if cur != cur0 || app != app0+1 {
		t.Errorf("the change pass made %d Current and %d Apply calls, want 0 and 1", cur-cur0, app-app0)
	}
	if add, rm := b.last(); add != "ipv4:203.0.113.50" || rm != "ipv4:198.18.0.0" {
		t.Errorf("Apply got add %q remove %q, want the change alone", add, rm)
	}
	if got := rec.get(); len(got) != 2501 || got[2500] != "dry-run ipv4:203.0.113.50" {
		t.Errorf("%d enforcements, last %q; want 2501, the new block last", len(got), got[len(got)-1])
	}
	if st := r.Stats(); st.MeshChanges != 2 || st.MeshResyncs != 1 || st.Added != 2501 || st.Removed != 1 || st.FullPasses != 1 || st.Passes != 2 {
		t.Errorf("stats %+v", st)
	}
	// A pass with no change calls no backend.
	mustPass(t, r.DeltaPass(t.Context()))
	if cur2, app2 := b.counts(); cur2 != cur || app2 != app {
		t.Errorf("an idle pass called the backend: %d Current, %d Apply", cur2-cur, app2-app)
	}
}

// When the feed cannot continue (a restored snapshot), the pass reads the
// policies whole and applies the difference, then follows the feed again.
func TestFeedLostResyncs(t *testing.T) {
	a, c := pol(t, intel.ActionBlock, "203.0.113.1", t0, time.Hour), pol(t, intel.ActionBlock, "203.0.113.3", t0, time.Hour)
	src := newFeed(a)
	b := newRecorder()
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	src.lose(func(m map[string]intel.Policy) {
		delete(m, a.ID)
		m[c.ID] = c
	})
	mustPass(t, r.DeltaPass(t.Context()))
	if got := b.Blocked(); len(got) != 1 || got[0] != c.Indicator {
		t.Fatalf("after the resync blocked %v, want [%v]", got, c.Indicator)
	}
	if st := r.Stats(); st.MeshResyncs != 2 {
		t.Errorf("MeshResyncs = %d, want 2", st.MeshResyncs)
	}
	pages, _ := src.reads()
	d := pol(t, intel.ActionBlock, "203.0.113.4", t0, time.Hour)
	src.commit(d)
	mustPass(t, r.DeltaPass(t.Context()))
	if !b.Has(d.Indicator) {
		t.Fatal("a change after the resync was not followed")
	}
	if p, _ := src.reads(); p != pages {
		t.Errorf("the feed was read in pages again after it could continue")
	}
}

// Policies expire at their expiry, by the injected clock, from the heap:
// no pass reads the source whole, and the backend gets the removal alone.
func TestExpiryRemovesOnTime(t *testing.T) {
	clk := &clock{t: t0}
	short := pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Minute)
	long := pol(t, intel.ActionBlock, "203.0.113.8", t0, time.Hour)
	local := pol(t, intel.ActionBlock, "203.0.113.9", t0, 2*time.Minute)
	src := newFeed()
	src.commit(short, long)
	src.local = []intel.Policy{local}
	b := newRecorder()
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: clk.Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	clk.Advance(time.Minute - time.Millisecond)
	mustPass(t, r.DeltaPass(t.Context()))
	if !b.Has(short.Indicator) {
		t.Fatal("removed before its expiry")
	}
	clk.Advance(time.Millisecond)
	mustPass(t, r.DeltaPass(t.Context()))
	if b.Has(short.Indicator) || !b.Has(long.Indicator) || !b.Has(local.Indicator) {
		t.Fatalf("at the short policy's expiry blocked %v", b.Blocked())
	}
	if _, rm := b.last(); rm != "ipv4:203.0.113.7" {
		t.Errorf("Apply removed %q, want the expired block alone", rm)
	}
	clk.Advance(time.Minute)
	mustPass(t, r.DeltaPass(t.Context()))
	if b.Has(local.Indicator) || !b.Has(long.Indicator) {
		t.Fatalf("at the local decision's expiry blocked %v", b.Blocked())
	}
	if pages, whole := src.reads(); pages != 0 || whole != 0 {
		t.Errorf("expiry read the source: %d pages, %d whole reads", pages, whole)
	}
}

// An entry removed behind the reconciler's back stays missing through
// change passes (they do not ask the backend) and is restored by the next
// full pass.
func TestFullPassRepairsDrift(t *testing.T) {
	a := pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	src := newFeed()
	src.commit(a)
	b := newRecorder()
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	mustPass(t, b.DryRun.Apply(t.Context(), nil, []intel.Indicator{a.Indicator}))
	stranger := pol(t, intel.ActionBlock, "198.51.100.1", t0, time.Hour)
	mustPass(t, b.DryRun.Apply(t.Context(), []intel.Policy{stranger}, nil))
	mustPass(t, r.DeltaPass(t.Context()))
	if b.Has(a.Indicator) {
		t.Fatal("a change pass with no change repaired the backend: it read it")
	}
	mustPass(t, r.ReconcileOnce(t.Context()))
	if !b.Has(a.Indicator) || b.Has(stranger.Indicator) {
		t.Fatalf("after the full pass blocked %v, want [%v]", b.Blocked(), a.Indicator)
	}
	if st := r.Stats(); st.FullPasses != 2 || st.Passes != 3 {
		t.Errorf("stats %+v", st)
	}
}

// A backend whose change failed is compared in full at the next pass,
// whatever kind it is.
func TestFailedDeltaMakesBackendStale(t *testing.T) {
	src := newFeed()
	b, other := newRecorder(), responders.NewDryRun(nil)
	r := responders.NewReconciler(src, []responders.Backend{b, other}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	a := pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	src.commit(a)
	b.fail = true
	if err := r.DeltaPass(t.Context()); err == nil || !strings.Contains(err.Error(), "backend dry-run") {
		t.Fatalf("err = %v, want the failing backend's", err)
	}
	if !other.Has(a.Indicator) {
		t.Fatal("the healthy backend did not get the change")
	}
	b.mu.Lock()
	b.fail = false
	b.mu.Unlock()
	cur0, _ := b.counts()
	mustPass(t, r.DeltaPass(t.Context())) // no new change: only a comparison finds it
	if cur, _ := b.counts(); cur != cur0+1 || !b.Has(a.Indicator) {
		t.Fatalf("after the retry: %d Current calls, blocked %v", cur-cur0, b.Blocked())
	}
	if bs := r.BackendStats()["dry-run"]; bs.Failures != 0 || bs.Added != 1 {
		t.Errorf("healthy backend stats %+v", bs)
	}
}

// Allows, protected ranges and the safety floors veto blocks arriving as
// changes, and an allow or a protected range arriving later lifts the
// blocks it covers; when it goes, they return.
func TestVetoesOnChanges(t *testing.T) {
	src := newFeed()
	src.setProtected(netip.MustParsePrefix("10.0.0.0/8"))
	b := newRecorder()
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	block := func(s string) intel.Policy { return pol(t, intel.ActionBlock, s, t0, time.Hour) }
	allow := func(s string) intel.Policy { return pol(t, intel.ActionAllow, s, t0, time.Hour) }
	want := func(step string, keys ...string) {
		t.Helper()
		mustPass(t, r.DeltaPass(t.Context()))
		var got []string
		for _, ind := range b.Blocked() {
			got = append(got, ind.Key())
		}
		if strings.Join(got, " ") != strings.Join(keys, " ") {
			t.Fatalf("%s: blocked %v, want %v", step, got, keys)
		}
	}
	src.commit(block("10.1.1.1"), block("127.0.0.1"), block("203.0.113.7"), block("203.0.113.8"),
		block("198.51.100.0/24"), block("evil.example"))
	want("protected and floor", "cidr:198.51.100.0/24", "domain:evil.example", "ipv4:203.0.113.7", "ipv4:203.0.113.8")
	if n := r.Stats().BelowFloor; n != 1 {
		t.Errorf("BelowFloor = %d, want 1", n)
	}
	a7 := allow("203.0.113.7")
	src.commit(a7)
	want("address allow", "cidr:198.51.100.0/24", "domain:evil.example", "ipv4:203.0.113.8")
	wide := allow("203.0.113.0/24")
	src.commit(wide)
	want("network allow", "cidr:198.51.100.0/24", "domain:evil.example")
	src.commit(allow("198.51.100.9"))
	want("an address allow inside a network block", "domain:evil.example")
	src.commit(allow("example"))
	want("domain allow")
	src.revoke(wide)
	want("network allow revoked", "ipv4:203.0.113.8")
	src.revoke(a7)
	want("address allow revoked", "ipv4:203.0.113.7", "ipv4:203.0.113.8")
	src.setProtected(netip.MustParsePrefix("203.0.113.8/32"))
	want("protected ranges changed", "ipv4:10.1.1.1", "ipv4:203.0.113.7")
}

// Of a mesh policy and a local decision on one indicator, the one that
// lasts longer is enforced; when it goes, the other takes over without
// the entry being removed, and a Refresher is handed the new expiry.
func TestOverlappingPoliciesOnChanges(t *testing.T) {
	clk := &clock{t: t0}
	mesh := pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	local := pol(t, intel.ActionBlock, "203.0.113.7", t0, 2*time.Hour)
	local.Author = "local:detector"
	src := newFeed()
	src.commit(mesh)
	src.local = []intel.Policy{local}
	b := &refreshRecorder{recorder: newRecorder()}
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: clk.Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	_, app0 := b.counts()
	longer := mesh
	longer.ExpiresAt = t0.Add(3 * time.Hour)
	src.commit(longer)
	mustPass(t, r.DeltaPass(t.Context()))
	if _, app := b.counts(); app != app0 {
		t.Errorf("a longer policy on a held entry was applied, not refreshed")
	}
	if got := b.refreshed(); len(got) != 1 || !got[0].ExpiresAt.Equal(longer.ExpiresAt) {
		t.Fatalf("Refresh got %v, want the longer policy", got)
	}
	src.revoke(longer)
	mustPass(t, r.DeltaPass(t.Context()))
	if !b.Has(local.Indicator) {
		t.Fatal("the local decision did not take over")
	}
	if got := b.refreshed(); len(got) != 2 || got[1].Author != "local:detector" {
		t.Fatalf("Refresh got %v, want the local decision second", got)
	}
	clk.Advance(2 * time.Hour)
	mustPass(t, r.DeltaPass(t.Context()))
	if b.Has(local.Indicator) {
		t.Fatal("held after every policy on it expired")
	}
}

// refreshRecorder records what Refresh is given.
type refreshRecorder struct {
	*recorder
	rmu  sync.Mutex
	held []intel.Policy
}

func (b *refreshRecorder) Refresh(_ context.Context, held []intel.Policy) (int, error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	b.held = append(b.held, held...)
	return len(held), nil
}

func (b *refreshRecorder) refreshed() []intel.Policy {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	return slices.Clone(b.held)
}

// In the loop, a Trigger runs a change pass: the backend is not asked
// what it holds; only the first pass, and one every Interval, is full.
func TestLoopTriggersChangePasses(t *testing.T) {
	src := newFeed()
	b := newRecorder()
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Interval: time.Hour})
	defer r.Close()
	r.Start(t.Context())
	waitFor(t, "the first pass", func() bool { return r.Stats().Passes >= 1 })
	for i := range 3 {
		p := intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})), "", "operator:test", time.Now(), time.Hour)
		src.commit(p)
		r.Trigger()
		waitFor(t, "the change enforced", func() bool { return b.Has(p.Indicator) })
	}
	if cur, _ := b.counts(); cur != 1 {
		t.Errorf("the backend was asked what it holds %d times, want once (the first pass)", cur)
	}
	if st := r.Stats(); st.FullPasses != 1 {
		t.Errorf("FullPasses = %d, want 1", st.FullPasses)
	}
}

// Policies that expire in the pass that reads a large set of new ones
// whole are still removed from the backend.
func TestLargeResyncAfterExpiry(t *testing.T) {
	clk := &clock{t: t0}
	old := addrBlocks(t, 5, t0, time.Minute)
	src := newFeed(old...)
	b := newRecorder()
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: clk.Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	clk.Advance(time.Minute)
	fresh := make([]intel.Policy, 2000)
	for i := range fresh {
		a := netip.AddrFrom4([4]byte{203, 0, byte(113 + i/250), byte(i % 250)})
		fresh[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "", "operator:test", clk.Now(), time.Hour)
	}
	src.lose(func(m map[string]intel.Policy) {
		clear(m)
		for _, p := range fresh {
			m[p.ID] = p
		}
	})
	mustPass(t, r.DeltaPass(t.Context()))
	if n := len(b.Blocked()); n != 2000 || b.Has(old[0].Indicator) {
		t.Fatalf("blocked %d, holding an expired one: %v; want the 2000 new ones", n, b.Has(old[0].Indicator))
	}
}
