package testnet

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/query"
)

// TestMeshWideQueryOneNodeKilled: on a five-node mesh that blocked an
// attacker, one node is stopped; a question about the attacker asked of
// any node reaches the four others and itself: four answers (each
// enforcing the block, the attacked ones with their own sightings) and
// one unreachable, within the deadline.
func TestMeshWideQueryOneNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 5-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 5, Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	attacker := netip.MustParseAddr("203.0.113.77")
	ind := intel.IndicatorFromAddr(attacker)
	for i := range 2 {
		if err := m.InjectSSHBruteForce(i, attacker, 12); err != nil {
			t.Fatal(err)
		}
	}
	if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		for _, n := range m.Nodes {
			if !n.Enforcing(ind) {
				return false, "node " + n.Site() + " does not enforce yet"
			}
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}

	killed := m.Nodes[4]
	if err := killed.Close(); err != nil {
		t.Fatal(err)
	}
	const deadline = 10 * time.Second
	start := time.Now()
	rs, err := m.Nodes[2].Query(ctx, query.Request{Kind: query.KindIndicator, Indicator: ind.Value}, deadline)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > deadline+2*time.Second {
		t.Fatalf("the query took %s, deadline %s", took, deadline)
	}
	answered, unreachable := 0, 0
	for _, r := range rs {
		switch {
		case r.Node == killed.ID():
			if r.Status != query.Unreachable && r.Status != query.TimedOut {
				t.Errorf("stopped node: %+v, want unreachable", r)
			}
			unreachable++
		case r.Status == query.Answered:
			answered++
			var a node.IndicatorAnswer
			if err := json.Unmarshal(r.Answer, &a); err != nil {
				t.Fatal(err)
			}
			if !a.Enforcing || a.MeshPolicy != intel.PolicyID(intel.ActionBlock, ind) || a.Sightings < 2 || a.Site != r.Site {
				t.Errorf("node %s answered %+v: want enforcing the mesh block, holding both sightings", r.Site, a)
			}
			attacked := r.Node == m.Nodes[0].ID() || r.Node == m.Nodes[1].ID()
			if attacked != (a.Local > 0) {
				t.Errorf("node %s: %d sightings of its own, attacked %v", r.Site, a.Local, attacked)
			}
		default:
			t.Errorf("node %s: %+v", r.Site, r)
		}
	}
	if answered != 4 || unreachable != 1 || len(rs) != 5 {
		t.Fatalf("%d answered, %d unreachable of %d, want 4 and 1 of 5: %+v", answered, unreachable, len(rs), rs)
	}
}
