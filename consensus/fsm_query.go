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

func (f *fsm) activePolicies(now time.Time) []intel.Policy {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]intel.Policy, 0, len(f.policies))
	for _, p := range f.policies {
		if p.Active(now) {
			p.Evidence = slices.Clone(p.Evidence)
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b intel.Policy) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// activePolicy returns the policy with this ID if it is held and active at now.
func (f *fsm) activePolicy(id string, now time.Time) (intel.Policy, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.policies[id]
	if !ok || !p.Active(now) {
		return intel.Policy{}, false
	}
	p.Evidence = slices.Clone(p.Evidence)
	return p, true
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

func (f *fsm) member(id string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.roster[id]
	return m, ok
}

func (f *fsm) counts() (policies, protected, members int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.policies), len(f.protected), len(f.roster)
}

// policyPage is PolicyPage. A first version: it sorts every policy.
func (f *fsm) policyPage(after string, limit int, now time.Time) ([]intel.Policy, string) {
	if limit <= 0 {
		limit = defaultPolicyPage
	}
	limit = min(limit, maxPolicyPage)
	all := f.activePolicies(now)
	i, _ := slices.BinarySearchFunc(all, after, func(p intel.Policy, id string) int {
		if p.ID <= id {
			return -1
		}
		return 1
	})
	all = all[i:]
	if len(all) <= limit {
		return all, ""
	}
	return all[:limit], all[limit-1].ID
}

// policyChanges is PolicyChanges. A first version without a change log:
// every caller resynchronises from pages.
func (f *fsm) policyChanges(since uint64, limit int) ([]PolicyChange, uint64, bool) {
	return nil, 0, false
}
