package node

import (
	"net/netip"
	"sync"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// stateSource is the node as the responders' StateSource: the desired
// state is the mesh-wide policies, this node's local decisions and the
// protected ranges.
type stateSource struct {
	n *Node

	mu        sync.Mutex
	lastLocal []intel.Policy // last local decisions read, kept if a read fails
}

var (
	_ responders.StateSource = (*stateSource)(nil)
	_ responders.ChangeFeed  = (*stateSource)(nil)
)

// MeshPolicies are the mesh-wide policies in force at now. The
// reconciler follows MeshChanges instead; this copies every policy.
func (s *stateSource) MeshPolicies(now time.Time) []intel.Policy {
	return s.n.deps.Consensus.Policies(now)
}

// MeshChanges is the consensus change feed of the mesh-wide policies.
func (s *stateSource) MeshChanges(since uint64, limit int) ([]responders.MeshChange, uint64, bool) {
	changes, next, ok := s.n.deps.Consensus.PolicyChanges(since, limit)
	out := make([]responders.MeshChange, len(changes))
	for i, c := range changes {
		out[i] = responders.MeshChange{Seq: c.Seq, Policy: c.Policy, Removed: c.Removed}
	}
	return out, next, ok
}

// MeshCount is the number of mesh-wide policies held.
func (s *stateSource) MeshCount() int { return s.n.deps.Consensus.PolicyCount() }

// MeshPage is a page of the active mesh-wide policies, in ID order.
func (s *stateSource) MeshPage(after string, limit int, now time.Time) ([]intel.Policy, string) {
	return s.n.deps.Consensus.PolicyPage(after, limit, now)
}

// LocalDecisions are this node's local decisions in force at now. If the
// store cannot be read, the last decisions read are returned, so that a
// transient error never lifts a block.
func (s *stateSource) LocalDecisions(now time.Time) []intel.Policy {
	ds, err := s.n.deps.Store.Decisions(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.n.log.Error("read local decisions", "err", err)
		return s.lastLocal
	}
	s.lastLocal = ds
	return ds
}

// Protected are the configured ranges plus those committed to the mesh.
func (s *stateSource) Protected() []netip.Prefix {
	return append(append([]netip.Prefix{}, s.n.live.Load().protected...), s.n.deps.Consensus.Protected()...)
}
