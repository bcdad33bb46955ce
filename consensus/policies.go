package consensus

import (
	"time"

	"github.com/meshward/meshward/intel"
)

// The policy query API: single look-ups, cursor pages and a change feed,
// none of which copies every held policy. Consensus.Policy (consensus.go)
// is the single look-up.

// Page bounds of PolicyPage.
const (
	defaultPolicyPage = 100
	maxPolicyPage     = 10_000
)

// PolicyPage returns up to limit active policies with IDs greater than
// after, in ID order, and the cursor of the next page ("" when there is
// none). limit <= 0 means 100; at most 10,000.
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
	Seq     uint64
	Policy  intel.Policy
	Removed bool
}

// PolicyChanges returns up to limit changes with Seq > since, oldest
// first, and the Seq to pass next time. ok is false when the changes after
// since are no longer all held (the caller fell too far behind, or a
// snapshot was restored): the caller must then resynchronise from
// PolicyPage and continue from next.
func (c *Consensus) PolicyChanges(since uint64, limit int) (changes []PolicyChange, next uint64, ok bool) {
	return c.fsm.policyChanges(since, limit)
}
