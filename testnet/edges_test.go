package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// A mesh of three voters, one standby and two edges: the edges are on
// every roster and in no raft configuration; they detect and report as
// any node does (the two attacked sites are the edges, so the block is
// proposed through a server), and the block committed reaches them over
// the certified topic and is enforced on all six nodes.
func TestEdgesEnforceCommittedBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 6, Dir: t.TempDir(), Logger: testLogger(t),
		Configure: func(_ int, cfg *node.Config) { cfg.Consensus.MaxVoters, cfg.Consensus.Standbys = 3, 1 }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		kinds := map[consensus.Kind]int{}
		for _, n := range m.Nodes {
			kinds[n.Consensus().Kind()]++
		}
		return kinds[consensus.KindServer] == 3 && kinds[consensus.KindStandby] == 1 && kinds[consensus.KindEdge] == 2,
			fmt.Sprintf("kinds %v, want 3 servers, 1 standby, 2 edges", kinds)
	}); err != nil {
		t.Fatal(err)
	}
	var edges []int
	for i, n := range m.Nodes {
		if n.Consensus().IsEdge() {
			edges = append(edges, i)
		}
	}
	attacker := netip.MustParseAddr("203.0.113.9")
	ind := intel.IndicatorFromAddr(attacker)
	for _, i := range edges {
		if err := m.InjectSSHBruteForce(i, attacker, 12); err != nil {
			t.Fatal(err)
		}
	}
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			if !n.Enforcing(ind) {
				return false, fmt.Sprintf("node %d (%s) does not yet enforce a mesh-wide block of %s", i, n.Consensus().Kind(), ind.Value)
			}
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}
	for _, i := range edges {
		st, ok := m.Nodes[i].Consensus().Edge()
		if !ok || st.Applied == 0 {
			t.Fatalf("edge %d: %+v", i, st)
		}
	}
}
