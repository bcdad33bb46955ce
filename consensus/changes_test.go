package consensus

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// The change log's ring holds each change as a record with its value
// and extra in slabs of its own: after the ring has wrapped many times
// over policies of every form (compact IPv4 and IPv6 addresses, domains,
// URLs, evidence, times outside Unix nanoseconds), and their slots in
// the store and in the log have been reused, every change still held
// reads back exactly as the policy was after it, with what it did.
func TestChangeLogRingKeepsEveryForm(t *testing.T) {
	s := newPolicyStore()
	s.changes = newChangeLog(5)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type want struct {
		p              intel.Policy
		removed, added bool
	}
	var model []want // every change made, in order
	held := map[string]intel.Policy{}
	note := func(p intel.Policy, removed, added bool) { model = append(model, want{p, removed, added}) }
	forms := []func(i int) intel.Indicator{
		func(i int) intel.Indicator {
			return intel.Indicator{Type: intel.IPv4, Value: fmt.Sprintf("198.51.100.%d", i%250)}
		},
		func(i int) intel.Indicator {
			return intel.Indicator{Type: intel.IPv6, Value: fmt.Sprintf("2001:db8::%x", i)}
		},
		func(i int) intel.Indicator {
			return intel.Indicator{Type: intel.Domain, Value: fmt.Sprintf("host%d.example.com", i)}
		},
		func(i int) intel.Indicator {
			return intel.Indicator{Type: intel.URL, Value: fmt.Sprintf("https://example.org/%d", i)}
		},
		func(i int) intel.Indicator {
			return intel.Indicator{Type: intel.CIDR, Value: fmt.Sprintf("10.%d.0.0/16", i%250)}
		},
	}
	for i := range 60 {
		ind := forms[i%len(forms)](i)
		p := intel.Policy{ID: intel.PolicyID(intel.ActionBlock, ind), Action: intel.ActionBlock, Indicator: ind,
			Reason: fmt.Sprintf("reason %d", i%3), Author: "op", CreatedAt: base, ExpiresAt: base.Add(time.Duration(1+i) * time.Hour)}
		if i%4 == 1 {
			p.Evidence = []intel.Evidence{{Origin: "site-a", Seq: uint64(i), Detector: "ssh", Seen: base}}
		}
		if i%7 == 3 {
			p.ExpiresAt = time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC) // beyond Unix nanoseconds
		}
		s.put(p)
		got, ok := s.get(mustParseID(t, p.ID))
		if !ok {
			t.Fatalf("policy %d not held", i)
		}
		held[p.ID] = got.policy(s.strs.strs)
		note(held[p.ID], false, true)
		if i%3 == 2 {
			// A merge that extends the expiry.
			q := p
			q.ExpiresAt = p.ExpiresAt.Add(time.Hour)
			q.Evidence = nil
			s.put(q)
			got, _ := s.get(mustParseID(t, p.ID))
			held[p.ID] = got.policy(s.strs.strs)
			note(held[p.ID], false, false)
		}
		if i%5 == 4 {
			// Remove an earlier one: its slots in the store are reused.
			prev := forms[(i-2)%len(forms)](i - 2)
			id := intel.PolicyID(intel.ActionBlock, prev)
			if old, ok := held[id]; ok && s.delete(mustParseID(t, id)) {
				note(old, true, false)
				delete(held, id)
			}
		}
		// Every change the ring still holds reads back as made.
		since := uint64(max(0, len(model)-5))
		changes, next, ok := s.changes.since(s, since, 0)
		if !ok || next != uint64(len(model)) || len(changes) != len(model)-int(since) {
			t.Fatalf("after policy %d: %d changes since %d, next %d ok %v; want %d, next %d", i, len(changes), since, next, ok, len(model)-int(since), len(model))
		}
		for j, c := range changes {
			w := model[int(since)+j]
			if c.Seq != since+uint64(j)+1 || c.Removed != w.removed || c.Added != w.added || !reflect.DeepEqual(c.Policy, w.p) {
				t.Fatalf("after policy %d, change %d:\n got  %+v\n want %+v (seq %d)", i, c.Seq, c, w, since+uint64(j)+1)
			}
		}
		if _, _, ok := s.changes.since(s, since-min(since, 1), 0); since > 0 && ok {
			t.Fatalf("after policy %d: a change that left the ring is still offered", i)
		}
	}
	if n := len(s.changes.entries); n != 5 || cap(s.changes.entries) != 5 {
		t.Fatalf("ring of 5 holds %d entries in a capacity of %d", n, cap(s.changes.entries))
	}
	// The log's slabs hold only what the ring's entries refer to.
	vals, extras := 0, 0
	for _, e := range s.changes.entries {
		if e.valueRef != 0 {
			vals++
		}
		if e.extraRef != 0 {
			extras++
		}
	}
	if got := len(s.changes.vals.items) - 1 - len(s.changes.vals.free); got != vals {
		t.Fatalf("the log's value slab holds %d values, its entries refer to %d", got, vals)
	}
	if got := len(s.changes.extras.items) - 1 - len(s.changes.extras.free); got != extras {
		t.Fatalf("the log's extra slab holds %d extras, its entries refer to %d", got, extras)
	}
}

func mustParseID(t *testing.T, id string) uint64 {
	t.Helper()
	v, ok := parseID(id)
	if !ok {
		t.Fatalf("policy ID %q", id)
	}
	return v
}

// The change log keeps an eighth of the policies held, at least
// minChangeLog changes and at most its size: a store of a few policies
// changed often keeps minChangeLog changes, and one that grows to 60,000
// policies after its ring wrapped keeps 7,500 and more, each read back in
// order as it was made, while a log sized for the worst case would hold
// all 65,536.
func TestChangeLogKeepsAnEighthOfThePolicies(t *testing.T) {
	s := newPolicyStore()
	s.changes = newChangeLog(defaultChangeLogSize)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type want struct {
		id    string
		added bool
	}
	var model []want
	block := func(i int, exp time.Time) intel.Policy {
		ind := intel.Indicator{Type: intel.IPv4, Value: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		return intel.Policy{ID: intel.PolicyID(intel.ActionBlock, ind), Action: intel.ActionBlock, Indicator: ind,
			Reason: "r", Author: "op", CreatedAt: base, ExpiresAt: exp}
	}
	// A few policies, extended again and again: the ring wraps at
	// minChangeLog.
	for round := range 60 {
		for i := range 100 {
			p := block(i, base.Add(time.Duration(round+1)*time.Hour))
			s.put(p)
			model = append(model, want{p.ID, round == 0})
		}
	}
	if n := len(s.changes.entries); n != minChangeLog {
		t.Fatalf("100 policies changed %d times: the log keeps %d changes, want %d", len(model), n, minChangeLog)
	}
	// Every change the log holds reads back in order as it was made, and
	// none before them.
	readBack := func() {
		t.Helper()
		n := len(s.changes.entries)
		seq := uint64(len(model))
		since := seq - uint64(n)
		for since < seq {
			changes, next, ok := s.changes.since(s, since, maxChangesLimit)
			if !ok || len(changes) == 0 {
				t.Fatalf("changes since %d of %d: ok %v, %d changes", since, seq, ok, len(changes))
			}
			for j, c := range changes {
				w := model[since+uint64(j)]
				if c.Seq != since+uint64(j)+1 || c.Policy.ID != w.id || c.Added != w.added {
					t.Fatalf("change %d of %d (log of %d): got %s added %v, want %s added %v", c.Seq, seq, n, c.Policy.ID, c.Added, w.id, w.added)
				}
			}
			since = next
		}
		if _, _, ok := s.changes.since(s, seq-uint64(n)-1, 0); ok {
			t.Fatalf("a change that left the log is still offered")
		}
	}
	readBack()
	// The store grows: the ring grows with it, by a quarter at least,
	// each time after it wrapped.
	const held = 60_000
	grew := 0
	for i := 100; i < held; i++ {
		p := block(i, base.Add(time.Hour))
		ring := s.changes.ring
		s.put(p)
		model = append(model, want{p.ID, true})
		if s.changes.ring != ring {
			grew++
			readBack()
		}
	}
	n := len(s.changes.entries)
	if n < held/changeLogShare || n > held/changeLogShare*5/4+1 || cap(s.changes.entries) != n || grew < 3 {
		t.Fatalf("%d policies held: the log keeps %d changes in a capacity of %d after growing %d times, want %d to %d",
			held, n, cap(s.changes.entries), grew, held/changeLogShare, held/changeLogShare*5/4+1)
	}
	readBack()
}
