package consensus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// TestRosterFeedsPeerstoreIncrementally: every node gives its peerstore
// each member's addresses and protects its connection as the member is
// admitted, and unprotects it when the member is removed, from the
// roster's changes alone (the peer loop looks at the whole roster only
// at start and after a restore).
func TestRosterFeedsPeerstoreIncrementally(t *testing.T) {
	log := testLogger(t)
	nodes := formCluster(t, 4, func(founder bool, secret string) *testNode { return newTestNode(t, log, founder, secret) })
	knows := func(on *testNode, of *testNode) bool {
		p := of.h.ID()
		return len(on.h.Peerstore().Addrs(p)) > 0 && on.h.ConnManager().IsProtected(p, connProtectTag)
	}
	for _, on := range nodes {
		for _, of := range nodes {
			if on == of {
				continue
			}
			waitFor(t, 30*time.Second, "every member in every peerstore, protected", func() bool { return knows(on, of) })
		}
	}
	// After the first pass, each node took only the changes since.
	for i, nd := range nodes {
		if ids, all := nd.c.fsm.takeRosterChanges(); all {
			t.Fatalf("node %d: the whole roster still marked changed (%d ids)", i, len(ids))
		}
	}
	v := nodes[0].c.RosterVersion()

	gone := nodes[3]
	rest := nodes[:3]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := followerOf(rest).operate(ctx, intel.OperatorCommand{Op: intel.OpRemoveMember, Member: gone.id()}); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	for _, on := range rest {
		waitFor(t, 30*time.Second, "the removed member unprotected everywhere", func() bool {
			return !on.c.IsMember(gone.id()) && !on.h.ConnManager().IsProtected(gone.h.ID(), connProtectTag)
		})
		on.c.mu.Lock()
		held := on.c.peers[gone.h.ID()]
		on.c.mu.Unlock()
		if held {
			t.Fatalf("%s still lists the removed member among its peers", shortID(on.id()))
		}
		for _, of := range rest {
			if on != of && !knows(on, of) {
				t.Fatalf("%s lost member %s", shortID(on.id()), shortID(of.id()))
			}
		}
	}
	if nodes[0].c.RosterVersion() == v {
		t.Fatal("the roster version did not move with a removal")
	}
}

// TestOnlyServersConnectionsProtected: in a mesh with edges every node
// knows every member's addresses, but protects only the raft servers'
// connections (an edge's connections may be trimmed, so that a server
// of a thousand-site mesh does not hold one to each site).
func TestOnlyServersConnectionsProtected(t *testing.T) {
	m := newEdgeMesh(t, 2, false, true, func(*Config) {})
	servers := raftServers(t, m.servers())
	isServer := func(n *testNode) bool {
		for _, s := range servers {
			if s == n.id() {
				return true
			}
		}
		return false
	}
	for _, on := range m.nodes {
		for _, of := range m.nodes {
			if on == of {
				continue
			}
			want := isServer(of)
			_, cs := on.c.chainServers()
			waitFor(t, 30*time.Second, fmt.Sprintf("%s (%s, chain servers %d) protecting %s: %v", shortID(on.id()), on.c.Kind(), len(cs), shortID(of.id()), want), func() bool {
				p := of.h.ID()
				return len(on.h.Peerstore().Addrs(p)) > 0 && on.h.ConnManager().IsProtected(p, connProtectTag) == want
			})
		}
	}
	for _, e := range m.edges() {
		if isServer(e) {
			t.Fatalf("edge %s is in the raft configuration", shortID(e.id()))
		}
	}
}
