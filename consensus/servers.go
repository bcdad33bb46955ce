package consensus

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Servers and edges (DESIGN "Servers and edges"). Up to MaxVoters voters
// and Standbys non-voters are the raft servers; every other member is an
// edge: on the roster (it gossips, queries, syncs and proposes through a
// server) but in no raft configuration, so the leader replicates to a
// handful of servers however large the mesh. An edge applies the entries
// a majority of the voters certifies (edge.go).
//
// The leader decides at a join: a joiner that finds every server place
// taken is admitted as an edge. When servers are lost (a departed server
// leaves a place free, or a voter is dead with no standby to replace
// it), the leader makes the longest-serving connected edge a standby
// (AddNonvoter); the existing voter logic (membership.go) promotes it.

// Kind is a member's part in the mesh, as the admin surface shows it.
type Kind string

// Kinds.
const (
	KindServer  Kind = "server"  // a raft voter
	KindStandby Kind = "standby" // a raft non-voter, ready to be promoted
	KindEdge    Kind = "edge"    // on the roster, in no raft configuration
)

// kindOf is the kind of a member of suffrage s.
func kindOf(s Suffrage) Kind {
	switch s {
	case SuffrageVoter:
		return KindServer
	case SuffrageNonvoter:
		return KindStandby
	}
	return KindEdge
}

// standbys is the configured number of standby non-voters.
func (c *Consensus) standbys() int { return max(c.cfg.Standbys, 0) }

// serversFull reports whether the raft configuration holds every server
// it may: MaxVoters + Standbys.
func (c *Consensus) serversFull() bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return len(f.Configuration().Servers) >= c.cfg.MaxVoters+c.standbys()
}

// configVoters are the voters of the raft configuration, sorted.
func (c *Consensus) configVoters() []string {
	var out []string
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				out = append(out, string(s.ID))
			}
		}
	}
	slices.Sort(out)
	return out
}

// configServerIDs lists every server of the raft configuration (voters
// and standbys), voters first, each group sorted.
func (c *Consensus) configServerIDs() []string {
	var voters, others []string
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters = append(voters, string(s.ID))
			} else {
				others = append(others, string(s.ID))
			}
		}
	}
	slices.Sort(voters)
	slices.Sort(others)
	return append(voters, others...)
}

// IsEdge reports whether this node runs as an edge: on the roster,
// applying certified entries, in no raft configuration.
func (c *Consensus) IsEdge() bool {
	r := c.edge.Load()
	return r != nil && !r.promoted.Load()
}

// Kind is this node's kind.
func (c *Consensus) Kind() Kind {
	if c.IsEdge() {
		return KindEdge
	}
	f := c.raft.GetConfiguration()
	if f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == c.cfg.LocalID {
				if s.Suffrage == raft.Voter {
					return KindServer
				}
				return KindStandby
			}
		}
	}
	return KindEdge
}

// promoteEdge, on the leader, makes one edge a standby when servers are
// missing: fewer live servers than MaxVoters + Standbys, lost counting
// those that failed the leader's heartbeats for DeadVoterTimeout (a dead
// voter is then replaced by the new standby, membership.go). It reports
// whether it acted. Edges are taken longest-serving first, among those
// this node is connected to (the leader replicates to them from now on).
func (c *Consensus) promoteEdge(ctx context.Context, servers []raft.Server, lost int) (bool, error) {
	if len(servers)-lost >= c.cfg.MaxVoters+c.standbys() {
		return false, nil
	}
	in := map[string]bool{}
	for _, s := range servers {
		in[string(s.ID)] = true
	}
	var edges []Member
	for _, m := range c.fsm.members() {
		if in[m.ID] || m.ID == c.cfg.LocalID || c.fsm.isDeparted(m.ID) {
			continue
		}
		p, err := peer.Decode(m.ID)
		if err != nil || c.h.Network().Connectedness(p) != network.Connected {
			continue
		}
		edges = append(edges, m)
	}
	if len(edges) == 0 {
		return false, nil
	}
	slices.SortFunc(edges, func(a, b Member) int {
		return cmp.Or(a.AdmittedAt.Compare(b.AdmittedAt), cmp.Compare(a.ID, b.ID))
	})
	id := edges[0].ID
	timeout := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := waitFuture(ctx, c.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(id), 0, timeout)); err != nil {
		return true, fmt.Errorf("make edge %s a standby: %w", shortID(id), err)
	}
	c.edgePromotions.Add(1)
	c.log.Info("made an edge a standby server", "node", id, "servers", len(servers)+1)
	return true, nil
}
