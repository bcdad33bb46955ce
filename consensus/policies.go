package consensus

import (
	"math"
	"time"

	"github.com/meshward/meshward/intel"
)

// The policy query API: single look-ups, cursor pages and a change feed,
// none of which copies every held policy. Consensus.Policy (consensus.go)
// is the single look-up, in O(log n). All of them read this node's
// state; call WaitConsistent first for a linearizable read.
//
// A consumer that mirrors the held policies (a responder, a cache):
//
//	changes, next, ok := c.PolicyChanges(since, 0)
//	if !ok {
//		// Resynchronise: remember next first, then walk the pages
//		// (the pages may already include changes after next; applying
//		// those again is harmless, as each change carries the whole
//		// policy or its removal).
//		for after := ""; ; {
//			page, cursor := c.PolicyPage(after, 1000, now)
//			... replace the mirror with the pages ...
//			if after = cursor; after == "" { break }
//		}
//	} else {
//		... apply changes in order ...
//	}
//	since = next
//
// The change log does not report a policy's expiry as it happens: a
// policy leaves the log (Removed) when the FSM's clock passes its expiry,
// which it does on the next accepted command. Readers filter by their own
// clock (Policy.Active) meanwhile, as PolicyPage does.

// Page bounds of PolicyPage.
const (
	defaultPolicyPage = 100
	maxPolicyPage     = 10_000
)

// PolicyPage returns up to limit active policies with IDs greater than
// after, in ID order, and the cursor of the next page ("" when there is
// none). limit <= 0 means 100; at most 10,000.
//
// A page costs O(log n + limit + the expired policies skipped) under the
// FSM's read lock. The cursor is any string: the page starts at the first
// ID that sorts after it.
func (c *Consensus) PolicyPage(after string, limit int, now time.Time) (page []intel.Policy, next string) {
	return c.fsm.policyPage(after, limit, now)
}

// PolicyCount is the number of policies held (expired ones are dropped as
// the FSM clock passes them, so it may briefly include some).
func (c *Consensus) PolicyCount() int {
	p, _, _ := c.fsm.counts()
	return p
}

// PolicyChange is one change to the held policies.
type PolicyChange struct {
	Seq    uint64
	Policy intel.Policy
	// Removed: the change removed the policy. Added: it added a policy
	// not held before. Neither: it merged a change into a held policy.
	Removed, Added bool
}

// PolicyChanges returns up to limit changes with Seq > since, oldest
// first, and the Seq to pass next time. ok is false when the changes after
// since are no longer all held (the caller fell too far behind, or a
// snapshot was restored): the caller must then resynchronise from
// PolicyPage and continue from next.
//
// Precisely: every add of a policy, every merge that changes one (a later
// expiry, a reason where there was none, more evidence) and every removal
// (revoke, a block dropped by an allow or a protected range, expiry)
// appends one change, numbered 1, 2, 3, ... from the start of this
// process; the numbers are local to this node and never persisted. The
// last 65,536 changes are kept. A restored snapshot (at start-up or sent
// by the leader) replaces the whole state: it empties the log and uses
// up one number. So:
//
//   - since = 0 answers ok = true, with the changes from the empty state,
//     only while this process has restored no snapshot and made at most
//     65,536 changes; otherwise ok = false and next is the last number
//     given. A caller starting at 0 therefore either replays a complete
//     history or is told to resynchronise.
//   - since greater than the last number given (a number from another
//     process) answers ok = false, with next the last number given.
//   - limit <= 0 means 1,000; at most 65,536.
//
// Each change carries the policy as it was after the change (for a
// removal, as it was when removed).
func (c *Consensus) PolicyChanges(since uint64, limit int) (changes []PolicyChange, next uint64, ok bool) {
	return c.fsm.policyChanges(since, limit)
}

// ExpiryCursor is a place in the held policies ordered by expiry, then
// ID: where an ExpiringPolicies walk continues from.
type ExpiryCursor struct {
	at int64 // expiryKey
	id uint64
}

// ExpiryCursorAfter is the cursor after every policy expiring at or
// before t.
func ExpiryCursorAfter(t time.Time) ExpiryCursor {
	return ExpiryCursor{at: expiryKey(t), id: math.MaxUint64}
}

// ExpiringPolicies returns up to limit held policies that expire after
// the cursor and at or before upTo, in the order of their expiries (then
// IDs), and the cursor after the last one returned (after itself when
// none is). limit <= 0 means 100; at most 10,000. A policy is held until
// the FSM's clock passes its expiry, so that a reader whose clock is
// ahead finds here the policies that expired for it, each once as its
// cursor moves on, without keeping their expiries itself. It costs
// O(log n + limit) under the FSM's read lock.
func (c *Consensus) ExpiringPolicies(after ExpiryCursor, upTo time.Time, limit int) ([]intel.Policy, ExpiryCursor) {
	return c.fsm.expiringPolicies(after, upTo, limit)
}

func (f *fsm) expiringPolicies(after ExpiryCursor, upTo time.Time, limit int) ([]intel.Policy, ExpiryCursor) {
	if limit <= 0 {
		limit = defaultPolicyPage
	}
	limit = min(limit, maxPolicyPage)
	end := expiryKey(upTo)
	if after.at > end {
		return nil, after
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.policies
	t := s.tables()
	var out []intel.Policy
	next := after
	s.byExpiry.AscendGreaterOrEqual(expiryItem{at: after.at, id: after.id}, func(it expiryItem) bool {
		if it.at > end || len(out) == limit {
			return false
		}
		if it.at == after.at && it.id <= after.id {
			return true // the cursor itself
		}
		stored, ok := s.byID.Get(rec{id: it.id})
		if !ok {
			return true // cannot happen: the indexes agree
		}
		r := t.view(stored)
		out = append(out, r.policy(t.strs))
		next = ExpiryCursor{at: it.at, id: it.id}
		return true
	})
	return out, next
}

// Before reports whether c comes before d.
func (c ExpiryCursor) Before(d ExpiryCursor) bool {
	return c.at < d.at || c.at == d.at && c.id < d.id
}
