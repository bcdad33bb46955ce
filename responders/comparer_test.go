package responders_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// comparing is a dry run that is a Comparer: it answers from the digest
// of what it holds unless asked to be thorough, and records each call.
type comparing struct {
	*recorder
	cmu       sync.Mutex
	thorough  []bool
	matches   int
	failApply bool
}

func (b *comparing) digest() responders.Digest {
	var d responders.Digest
	for _, ind := range b.Blocked() {
		d.Add(ind.Key())
	}
	return d
}

func (b *comparing) Compare(ctx context.Context, desired responders.DesiredSet) ([]intel.Policy, []intel.Indicator, []intel.Policy, error) {
	b.cmu.Lock()
	b.thorough = append(b.thorough, desired.Thorough())
	if !desired.Thorough() && desired.Digest(nil) == b.digest() {
		b.matches++
		b.cmu.Unlock()
		return nil, nil, nil, nil
	}
	b.cmu.Unlock()
	var add []intel.Policy
	var remove []intel.Indicator
	for k, p := range desired.All() {
		if !b.Has(p.Indicator) {
			add = append(add, *p)
		}
		_ = k
	}
	for _, ind := range b.Blocked() {
		if !desired.Has(ind.Key()) {
			remove = append(remove, ind)
		}
	}
	return add, remove, nil, nil
}

func (b *comparing) calls() (thorough []bool, matches int) {
	b.cmu.Lock()
	defer b.cmu.Unlock()
	return append([]bool(nil), b.thorough...), b.matches
}

// The reconciler keeps the digest of the desired keys through changes,
// so that a full pass over a Comparer that holds what it should is
// answered from digests; the first comparison, and the one after a
// failed change, are thorough.
func TestComparerDigestsAndThoroughness(t *testing.T) {
	src := newFeed(addrBlocks(t, 50, t0, time.Hour)...)
	b := &comparing{recorder: newRecorder()}
	r := responders.NewReconciler(src, []responders.Backend{b}, responders.Options{Now: (&clock{t: t0}).Now})
	defer r.Close()
	mustPass(t, r.ReconcileOnce(t.Context()))
	for i, p := range addrBlocks(t, 20, t0, time.Hour) {
		if i%2 == 0 {
			src.revoke(p)
		}
	}
	src.commit(pol(t, intel.ActionBlock, "203.0.113.1", t0, time.Hour), pol(t, intel.ActionBlock, "2001:db8::1", t0, time.Hour))
	mustPass(t, r.DeltaPass(t.Context()))
	src.commit(pol(t, intel.ActionAllow, "198.18.0.21", t0, time.Hour))
	mustPass(t, r.DeltaPass(t.Context()))
	if len(b.Blocked()) != 50-10+2-1 {
		t.Fatalf("blocked %d, want 41", len(b.Blocked()))
	}
	mustPass(t, r.ReconcileOnce(t.Context()))
	if th, m := b.calls(); len(th) != 2 || !th[0] || th[1] || m != 1 {
		t.Fatalf("Compare calls thorough %v, %d digest matches; want [true false] and 1", th, m)
	}
	// A failed change: the next comparison is thorough and repairs it.
	b.recorder.mu.Lock()
	b.recorder.fail = true
	b.recorder.mu.Unlock()
	c := pol(t, intel.ActionBlock, "203.0.113.2", t0, time.Hour)
	src.commit(c)
	if err := r.DeltaPass(t.Context()); err == nil {
		t.Fatal("the failed change reported no error")
	}
	b.recorder.mu.Lock()
	b.recorder.fail = false
	b.recorder.mu.Unlock()
	mustPass(t, r.DeltaPass(t.Context()))
	if th, _ := b.calls(); len(th) != 3 || !th[2] {
		t.Fatalf("Compare calls thorough %v, want a third, thorough", th)
	}
	if !b.Has(c.Indicator) {
		t.Fatal("the thorough comparison did not repair the failed change")
	}
}
