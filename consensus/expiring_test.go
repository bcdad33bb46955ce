package consensus

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// ExpiringPolicies walks the held policies by expiry: a reader whose
// clock moves on finds each policy that expired for it once, in pages
// that split even a run of policies expiring at the same instant, never
// one that does not expire, and an extended policy at its new expiry
// only.
func TestExpiringPolicies(t *testing.T) {
	a := newApplier(t)
	var short, long []string
	for i := range 25 {
		short = append(short, fmt.Sprintf("198.51.100.%d", 1+i))
		long = append(long, fmt.Sprintf("198.51.101.%d", 1+i))
	}
	a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, time.Hour, short...), t0))       // 25 at t0+1h
	a.mustApply(a.op(bulkOp(t, intel.OpBlockBulk, 3*time.Hour, long...), t0))      // 25 at t0+3h
	a.mustApply(a.op(blockOp(t, "203.0.113.1", 0), t0))                            // never
	a.mustApply(a.op(blockOp(t, "203.0.113.2", 2*time.Hour), t0))                  // t0+2h ...
	a.mustApply(a.op(blockOp(t, "203.0.113.2", 4*time.Hour), t0.Add(time.Minute))) // ... extended
	id := func(s string) string { return intel.PolicyID(intel.ActionBlock, mustIndicator(t, s)) }

	// walk reads (after, upTo] in pages of 10.
	walk := func(after ExpiryCursor, upTo time.Time) ([]string, ExpiryCursor) {
		t.Helper()
		var ids []string
		for pages := 0; ; pages++ {
			page, next := a.f.expiringPolicies(after, upTo, 10)
			for i, p := range page {
				if p.ExpiresAt.IsZero() || p.ExpiresAt.After(upTo) {
					t.Fatalf("policy %s expiring at %v in a walk up to %v", p.ID, p.ExpiresAt, upTo)
				}
				if i > 0 && p.ExpiresAt.Before(page[i-1].ExpiresAt) {
					t.Fatalf("page out of expiry order: %v", page)
				}
				ids = append(ids, p.ID)
			}
			if len(page) == 0 && next != after {
				t.Fatalf("an empty page moved the cursor")
			}
			after = next
			if len(page) < 10 {
				return ids, after
			}
			if pages > 100 {
				t.Fatal("the walk does not end")
			}
		}
	}
	want := func(inds ...string) []string {
		var out []string
		for _, s := range inds {
			out = append(out, id(s))
		}
		slices.Sort(out)
		return out
	}
	check := func(what string, got, w []string) {
		t.Helper()
		s := slices.Sorted(slices.Values(got))
		if !slices.Equal(s, w) || len(slices.Compact(s)) != len(got) {
			t.Fatalf("%s: %d policies %v, want %d %v", what, len(got), got, len(w), w)
		}
	}

	start := ExpiryCursorAfter(t0)
	got, c := walk(start, t0.Add(30*time.Minute))
	check("before any expiry", got, nil)
	got, c = walk(c, t0.Add(time.Hour)) // an expiry is reached at its instant
	check("the first hour", got, want(short...))
	got, c = walk(c, t0.Add(time.Hour))
	check("the first hour again", got, nil)
	got, c = walk(c, t0.Add(150*time.Minute))
	check("past the extended one's first expiry", got, nil)
	got, c = walk(c, t0.Add(5*time.Hour))
	check("five hours", got, want(append(slices.Clone(long), "203.0.113.2")...))
	got, _ = walk(c, t0.Add(1000*time.Hour))
	check("ever after", got, nil)

	// One walk over everything sees each expiring policy once.
	got, _ = walk(ExpiryCursorAfter(time.Time{}), t0.Add(1000*time.Hour))
	check("one walk", got, want(append(append(slices.Clone(short), long...), "203.0.113.2")...))
	// A cursor past upTo answers nothing and stays.
	if page, next := a.f.expiringPolicies(ExpiryCursorAfter(t0.Add(2*time.Hour)), t0, 10); len(page) != 0 || next != ExpiryCursorAfter(t0.Add(2*time.Hour)) {
		t.Fatalf("a cursor past upTo: %d policies, cursor %+v", len(page), next)
	}
}
