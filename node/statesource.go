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

var _ responders.StateSource = (*stateSource)(nil)

// MeshPolicies are the mesh-wide policies in force at now.
func (s *stateSource) MeshPolicies(now time.Time) []intel.Policy {
	return s.n.deps.Consensus.Policies(now)
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
