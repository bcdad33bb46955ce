package consensus

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Queries of the FSM's state, under its read lock.

// activePolicies returns every policy active at now, sorted by ID: a copy
// of the whole set, for the callers that still need it (Policies,
// ReadPolicies). PolicyPage and PolicyChanges do not copy everything.
func (f *fsm) activePolicies(now time.Time) []intel.Policy {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.policies
	out := make([]intel.Policy, 0, s.len())
	t := s.tables()
	s.byID.Ascend(func(stored rec) bool {
		if r := t.view(stored); r.active(now) {
			out = append(out, r.policy(t.strs))
		}
		return true
	})
	return out
}

// activePolicy returns the policy with this ID if it is held and active at now.
func (f *fsm) activePolicy(id string, now time.Time) (intel.Policy, bool) {
	n, ok := parseID(id)
	if !ok {
		return intel.Policy{}, false
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.policies.get(n)
	if !ok || !r.active(now) {
		return intel.Policy{}, false
	}
	return r.policy(f.policies.strs.strs), true
}

// policyPage is PolicyPage: a walk of the ID order from the cursor.
func (f *fsm) policyPage(after string, limit int, now time.Time) ([]intel.Policy, string) {
	if limit <= 0 {
		limit = defaultPolicyPage
	}
	limit = min(limit, maxPolicyPage)
	from, ok := idAfter(after)
	if !ok {
		return nil, ""
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.policies
	var (
		page []intel.Policy
		more bool
	)
	t := s.tables()
	s.byID.AscendGreaterOrEqual(rec{id: from}, func(stored rec) bool {
		r := t.view(stored)
		if !r.active(now) {
			return true
		}
		if len(page) == limit {
			more = true
			return false
		}
		page = append(page, r.policy(t.strs))
		return true
	})
	if !more {
		return page, ""
	}
	return page, page[len(page)-1].ID
}

// idAfter returns the smallest policy ID (16 lower-case hex digits, as a
// number) that sorts after the string after; ok is false when none does.
// "" comes before every ID.
func idAfter(after string) (uint64, bool) {
	const hexDigits = "0123456789abcdef"
	digit := func(c byte) (uint64, bool) {
		switch {
		case c >= '0' && c <= '9':
			return uint64(c - '0'), true
		case c >= 'a' && c <= 'f':
			return uint64(c-'a') + 10, true
		}
		return 0, false
	}
	// v holds the longest run of hex digits that starts after, up to 16.
	var v uint64
	k := 0
	for k < len(after) && k < 16 {
		d, ok := digit(after[k])
		if !ok {
			break
		}
		v = v<<4 | d
		k++
	}
	shift := func(x uint64, n int) uint64 { return x << (4 * uint(16-n)) }
	switch {
	case k == 16:
		// An ID equal to after's first 16 characters is not after it
		// (equal, or a prefix of it): the next one is.
		if v == ^uint64(0) {
			return 0, false
		}
		return v + 1, true
	case k == len(after):
		// after is a shorter run of digits: it precedes every ID it
		// starts, the first of which is after padded with zeros.
		return shift(v, k), true
	}
	// after[k] is not a hex digit: the IDs starting with after[:k] and
	// then a greater digit come after it.
	c := after[k]
	for i := 0; i < len(hexDigits); i++ {
		if hexDigits[i] > c {
			return shift(v<<4|uint64(i), k+1), true
		}
	}
	// No digit is greater: the next run of k digits, if any.
	if k == 0 || v == (uint64(1)<<(4*uint(k)))-1 {
		return 0, false
	}
	return shift(v+1, k), true
}

// policyChanges is PolicyChanges.
func (f *fsm) policyChanges(since uint64, limit int) ([]PolicyChange, uint64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.policies.changes.since(f.policies, since, limit)
}

// protectedPrefixes returns the explicit protected ranges and the member
// addresses, sorted and without duplicates.
func (f *fsm) protectedPrefixes() []netip.Prefix {
	f.mu.RLock()
	defer f.mu.RUnlock()
	all := maps.Clone(f.protected)
	maps.Copy(all, f.memberIPs)
	return sortedPrefixes(all)
}

// appliedIndex is the raft index of the last command applied (or of the
// snapshot restored).
func (f *fsm) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

func (f *fsm) members() []Member {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Member, 0, len(f.roster))
	for _, m := range f.roster {
		m.Addrs = slices.Clone(m.Addrs)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (f *fsm) voterIDs() []string {
	f.mu.RLock()
	var out []string
	for id, m := range f.roster {
		if m.Voter {
			out = append(out, id)
		}
	}
	f.mu.RUnlock()
	slices.Sort(out)
	return out
}

func (f *fsm) member(id string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.roster[id]
	return m, ok
}

func (f *fsm) counts() (policies, protected, members int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.policies.len(), len(f.protected), len(f.roster)
}
