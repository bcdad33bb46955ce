package consensus

import (
	"testing"
	"time"
)

// An indicator blocked automatically before is blocked for longer when it
// returns: the cap doubles for each earlier block (up to the rules'
// doublings), a block merged into the one in force does not count, the
// caps hold in the FSM (ttl_cap, counted), and the history survives a
// snapshot.
func TestFSMRecidiveDoublesTheCap(t *testing.T) {
	a := newApplier(t)
	const ind = "203.0.113.77"
	ttl := a.f.rules.BlockTTL
	if a.f.rules.RecidiveDoublings != defaultRecidiveDoublings {
		t.Fatalf("the test mesh's rules: recidive_doublings %d, want %d", a.f.rules.RecidiveDoublings, defaultRecidiveDoublings)
	}
	at := t0
	// First episode: the mesh's TTL; a merge within it neither doubles
	// the cap nor counts.
	wantRefused(t, a, a.auto(ind, at, 2*ttl, "A", "B"), "ttl_cap")
	a.mustApply(a.auto(ind, at, ttl, "A", "B"))
	a.mustApply(a.auto(ind, at.Add(time.Minute), ttl, "A", "C"))
	wantRefused(t, a, a.auto(ind, at.Add(2*time.Minute), 2*ttl, "B", "C"), "ttl_cap")
	if n := a.f.recidive.prior(mustIndicator(t, ind)); n != 1 {
		t.Fatalf("after one episode (and a merge): %d blocks recorded, want 1", n)
	}
	// Each return after the block expired doubles the cap, up to the
	// rules' doublings.
	for episode, want := range []time.Duration{2 * ttl, 4 * ttl, 8 * ttl, 8 * ttl} {
		at = at.Add(10 * ttl) // the block in force has expired
		wantRefused(t, a, a.auto(ind, at, want+time.Hour, "A", "B"), "ttl_cap")
		a.mustApply(a.auto(ind, at, want, "A", "B"))
		got := a.f.activePolicies(at)
		if len(got) != 1 || got[0].ExpiresAt.Sub(got[0].CreatedAt) != want {
			t.Fatalf("episode %d: policies %+v, want one of %s", episode+2, got, want)
		}
	}
	// Another indicator is unaffected.
	wantRefused(t, a, a.auto("203.0.113.78", at, 2*ttl, "A", "B"), "ttl_cap")

	snap := snapshotBytes(t, a.f)
	b := &applier{t: t, f: newFSM(nil), members: a.members, index: a.index, seq: a.seq, token: true}
	b.f.mustRestore(t, snap)
	if got, want := b.f.recidive.prior(mustIndicator(t, ind)), a.f.recidive.prior(mustIndicator(t, ind)); got != want || got != 5 {
		t.Fatalf("restored history: %d blocks, want %d (5)", got, want)
	}
	at = at.Add(10 * 8 * ttl)
	b.mustApply(b.auto(ind, at, 8*ttl, "A", "B"))
}

// The history is bounded, forgetting the indicator recorded first; the
// cap never passes maxBlockTTL; a malformed snapshot record is refused.
func TestRecidiveBoundsAndCap(t *testing.T) {
	r := newRecidive()
	first := mustIndicator(t, "198.51.100.1")
	r.record(first)
	for i := range maxRecidiveRecords {
		r.record(mustIndicator(t, "10."+itoa(i>>16)+"."+itoa(i>>8&255)+"."+itoa(i&255)))
	}
	if len(r.counts) != maxRecidiveRecords || len(r.order) != maxRecidiveRecords || r.prior(first) != 0 {
		t.Fatalf("%d counts, %d ordered, first %d: want the bound and the first forgotten", len(r.counts), len(r.order), r.prior(first))
	}
	rules := DefaultRules()
	rules.BlockTTL, rules.RecidiveDoublings = 20*24*time.Hour, maxRecidiveDoublings
	if got := recidiveTTL(rules, 8); got != maxBlockTTL {
		t.Fatalf("cap %s, want maxBlockTTL %s", got, maxBlockTTL)
	}
	rules.RecidiveDoublings = 0
	if got := recidiveTTL(rules, 8); got != rules.BlockTTL {
		t.Fatalf("doublings off: cap %s, want %s", got, rules.BlockTTL)
	}
	for _, bad := range [][]recidiveRecord{{{Key: 1, Count: 0}}, {{Key: 1, Count: 1}, {Key: 1, Count: 2}}} {
		if _, err := restoreRecidive(bad); err == nil {
			t.Errorf("%+v restored", bad)
		}
	}
	rules.RecidiveDoublings = maxRecidiveDoublings + 1
	if err := rules.Validate(); err == nil {
		t.Error("recidive_doublings past the bound validated")
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
