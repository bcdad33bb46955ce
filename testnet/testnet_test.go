package testnet

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() && os.Getenv("MESHWARD_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestFiveNodeBruteForceEnforcedEverywhere is the walking skeleton end to
// end: two nodes see the attack, all five enforce the mesh-wide block.
func TestFiveNodeBruteForceEnforcedEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 5-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunBruteForce(ctx, ScenarioOptions{
		Options:  Options{Nodes: 5, Dir: t.TempDir(), Logger: testLogger(t)},
		Attacked: 2,
		Attacker: netip.MustParseAddr("203.0.113.7"),
	})
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	if !rep.PolicyCommitted || rep.EnforcedOn != 5 || !rep.OK() {
		t.Fatalf("committed=%v enforced_on=%d, want true and 5", rep.PolicyCommitted, rep.EnforcedOn)
	}
	detected := 0
	for _, n := range rep.PerNode {
		if n.Detected {
			detected++
			if !n.Attacked {
				t.Errorf("node %s detected an attack it never saw", n.Site)
			}
		}
		if !n.Enforcing || n.EnforceMs < 0 || n.PropagationMs < 0 {
			t.Errorf("node %s: enforcing=%v enforce_ms=%v propagation_ms=%v", n.Site, n.Enforcing, n.EnforceMs, n.PropagationMs)
		}
	}
	if detected != 2 {
		t.Errorf("%d nodes detected the attack, want the 2 attacked ones", detected)
	}
	if rep.EnforceMs.P50 < 0 || rep.EnforceMs.Max < rep.EnforceMs.P50 {
		t.Errorf("enforce percentiles inconsistent: %+v", rep.EnforceMs)
	}
	// A block is enforced after its first commit, which comes after the
	// first detection: commit → enforced is within detection → enforced.
	firstCommit := rep.CommitMs.Max
	for _, n := range rep.PerNode {
		if n.CommitMs >= 0 {
			firstCommit = min(firstCommit, n.CommitMs)
		}
	}
	if rep.CommitToEnforceMs.P50 < 0 || firstCommit <= 0 || math.Abs(rep.CommitToEnforceMs.Max-(rep.EnforceMs.Max-firstCommit)) > 0.01 {
		t.Errorf("first commit at %v ms; first commit → enforced %+v, detected → enforced %+v: inconsistent", firstCommit, rep.CommitToEnforceMs, rep.EnforceMs)
	}
	if rep.SettleMs != 0 {
		t.Errorf("a %d-node mesh waited %v ms to settle", rep.Nodes, rep.SettleMs)
	}
	if !rep.GCHeld {
		t.Errorf("garbage collection was not held off during the attack")
	}
	if _, err := processCPU(os.Getpid()); err == nil && rep.AttackCPUMs < 0 {
		t.Errorf("the attack's CPU time was not read: %v", rep.AttackCPUMs)
	}
	// The log lines were written before anything was detected, and each
	// node enforced after both.
	if rep.LineDetectMs < 0 || rep.LineEnforceMs.P50 < rep.LineDetectMs || rep.LineEnforceMs.Max < rep.EnforceMs.Max {
		t.Errorf("line → detected %v ms, line → enforced %+v, detected → enforced %+v: inconsistent", rep.LineDetectMs, rep.LineEnforceMs, rep.EnforceMs)
	}
}

// TestSingleWitnessDoesNotBlockMeshWide: one node alone can never block an
// address mesh-wide, however loud its evidence.
func TestSingleWitnessDoesNotBlockMeshWide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 5-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 5, Dir: t.TempDir(), Logger: testLogger(t), LocalBlock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	attacker := netip.MustParseAddr("198.51.100.23")
	ind := intel.IndicatorFromAddr(attacker)
	if err := m.InjectSSHBruteForce(0, attacker, 50); err != nil {
		t.Fatal(err)
	}
	// Every node must hold the sighting and have evaluated it; only then is
	// the absence of a policy meaningful.
	err = Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		for _, n := range m.Nodes {
			recs, err := n.Store().SightingsFor(ind, time.Now().Add(-time.Hour))
			if err != nil || len(recs) == 0 {
				return false, "node " + n.Site() + " has not received the sighting"
			}
			tl, _ := n.Timeline(ind)
			if tl.Received.IsZero() || n.Stats().Evaluations == 0 {
				return false, "node " + n.Site() + " has not evaluated the sighting"
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	// The witness blocks locally (first tier) ...
	if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		return m.Nodes[0].Enforcing(ind), "the witness does not block locally"
	}); err != nil {
		t.Fatal(err)
	}
	// ... but nothing is proposed or committed, and no other node blocks.
	for i, n := range m.Nodes {
		if s := n.Stats(); s.Proposals != 0 {
			t.Errorf("node %d proposed %d mesh-wide blocks on one witness", i, s.Proposals)
		}
		for _, p := range n.Consensus().Policies(time.Now()) {
			if p.Indicator == ind {
				t.Errorf("node %d holds mesh-wide policy %+v", i, p)
			}
		}
		if i > 0 && n.Enforcing(ind) {
			t.Errorf("node %d enforces a block it has no mesh policy or own evidence for", i)
		}
	}
}

// An operator's indicator report reaches every node's store, and blocks
// nothing: intelligence is not policy.
func TestIndicatorReportSharedNotEnforced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ind, err := intel.ParseIndicator("c2.evil.example")
	if err != nil {
		t.Fatal(err)
	}
	r := intel.IndicatorReport{Indicator: ind, Source: "operator:test", Confidence: 90,
		Labels: []string{"c2"}, ValidFrom: time.Now().UTC()}
	seq, err := m.Nodes[1].PublishReport(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	err = Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		for _, n := range m.Nodes {
			recs, err := n.Reports(ctx, 10)
			if err != nil || len(recs) != 1 {
				return false, "node " + n.Site() + " does not hold exactly the one report"
			}
			if recs[0].Origin != m.Nodes[1].ID() || recs[0].Seq != seq || recs[0].Report.Indicator != ind {
				t.Fatalf("node %s holds %+v", n.Site(), recs[0])
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Nodes {
		if len(n.Consensus().Policies(time.Now())) != 0 || n.Enforcing(ind) || n.Stats().Proposals != 0 {
			t.Errorf("node %s acted on a report: policies %v", n.Site(), n.Consensus().Policies(time.Now()))
		}
	}
}

// A partitioned minority keeps what it had and misses what the majority
// commits meanwhile; once the partition heals it catches up.
func TestPartitionedMinorityCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	block := func(addr string) intel.Indicator {
		t.Helper()
		ind := intel.IndicatorFromAddr(netip.MustParseAddr(addr))
		if err := m.Operator().Block(ctx, 0, ind, time.Hour, "testnet partition"); err != nil {
			t.Fatal(err)
		}
		return ind
	}
	enforced := func(ind intel.Indicator, nodes ...int) error {
		return Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			for _, i := range nodes {
				if !m.Nodes[i].Enforcing(ind) {
					return false, fmt.Sprintf("node %d does not enforce %s", i, ind.Value)
				}
			}
			return true, ""
		})
	}
	before := block("203.0.113.21")
	if err := enforced(before, 0, 1, 2); err != nil {
		t.Fatal(err)
	}

	if err := m.Partition([]int{0, 1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		id, _ := peer.Decode(m.Nodes[2].ID())
		for _, i := range []int{0, 1} {
			if m.Nodes[i].Host().Network().Connectedness(id) == network.Connected {
				return false, fmt.Sprintf("node %d still connected to node 2", i)
			}
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}
	during := block("203.0.113.22")
	if err := enforced(during, 0, 1); err != nil {
		t.Fatal(err)
	}
	if m.Nodes[2].Enforcing(during) {
		t.Fatal("the cut-off node enforces a block committed after the partition")
	}
	if !m.Nodes[2].Enforcing(before) {
		t.Fatal("the cut-off node stopped enforcing what it had")
	}

	m.Heal()
	if err := enforced(during, 2); err != nil {
		t.Fatal(err)
	}
}

// TestReportSumsNodeCounters: the report sums the nodes' certified
// counts and dropped RPCs, whatever their timelines hold.
func TestReportSumsNodeCounters(t *testing.T) {
	nts := []NodeTimeline{
		{Index: 0, Kind: "server", RPCDropped: 3, Certified: CertifiedCounts{Messages: 2, Entries: 5, Fallbacks: 1}},
		{Index: 1, Kind: "edge", RPCDropped: 4},
		{Index: 2, Kind: "edge"},
	}
	r := &Report{}
	r.fill(nts, 1)
	if r.RPCDropped != 7 || r.Certified != (CertifiedCounts{Messages: 2, Entries: 5, Fallbacks: 1}) {
		t.Fatalf("dropped %d, certified %+v: want 7 and {2 5 1}", r.RPCDropped, r.Certified)
	}
	if len(r.PerNode) != 3 {
		t.Fatalf("%d per-node rows, want 3", len(r.PerNode))
	}
}
