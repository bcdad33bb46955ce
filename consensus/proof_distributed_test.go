package consensus

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// sealPartial seals a partial sighting (a sub-threshold summary) of ind
// by key: count events from first to sent, sent at sent.
func sealPartial(tb testing.TB, key ed25519.PrivateKey, ind intel.Indicator, sent, first time.Time, count int) []byte {
	tb.Helper()
	s := intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Confidence: 80, Count: count,
		FirstSeen: first, LastSeen: sent, Partial: true}
	b, err := intel.SealJSON(key, intel.KindSighting, proofSeq.Add(1), sent, s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestRulesValidateDistributed(t *testing.T) {
	base := DefaultRules() // min_nodes 2
	for _, tc := range []struct {
		k, sum, c int
		want      string // "" valid
	}{
		{0, 0, 0, ""},
		{5, 20, 4, ""},
		{2, 5, 4, ""},
		{0, 20, 4, "distributed_min_sites 0 (off) with distributed_threshold 20"},
		{1, 20, 4, "distributed_min_sites 1: want 2..64"},
		{65, 20, 4, "distributed_min_sites 65"},
		{5, 20, 0, "distributed_site_cap 0: want 1..65536"},
		{5, 4, 4, "distributed_threshold 4: want more than distributed_site_cap (4)"},
		{5, maxDistributedThreshold + 1, 4, "distributed_threshold 1048577"},
	} {
		r := base
		r.DistributedMinSites, r.DistributedThreshold, r.DistributedSiteCap = tc.k, tc.sum, tc.c
		err := r.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%d/%d/%d: %v, want %q", tc.k, tc.sum, tc.c, err, tc.want)
		}
	}
	r := base
	r.MinNodes = 4
	r.DistributedMinSites, r.DistributedThreshold, r.DistributedSiteCap = 3, 20, 4
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "distributed_min_sites 3: want at least min_nodes (4)") {
		t.Errorf("k below min_nodes: %v", err)
	}
	r.DistributedSiteCap = 4
	if got := r.SiteContribution(3, 3, -7, 1_000_000_000); got != 4 {
		t.Errorf("contribution %d, want the cap 4", got)
	}
}

// The distributed rule in a real three-member mesh: the operator turns it
// on (k = 3 sites, threshold 9, each site capped at 4); blocks proven by
// partial sightings are committed when the rule holds and refused, by
// name and counted on every member, when it does not.
func TestDistributedProofs(t *testing.T) {
	nodes := byzantineCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader := waitLeader(t, nodes)
	// Off (the default): partials of every member are not evidence,
	// though they come from min_nodes members.
	now := time.Now().UTC()
	ind := mustIndicator(t, "203.0.113.101")
	var parts [][]byte
	for _, n := range nodes {
		parts = append(parts, sealPartial(t, n.edKey(t), ind, now, now.Add(-time.Minute), 4))
	}
	attack(t, nodes, autoBlock(t, ind.Value, now, time.Hour, parts...), "partial_not_evidence")

	// A bad setting is refused, naming the field.
	err := leader.operate(ctx, intel.OperatorCommand{Op: intel.OpSetDistributed, DistributedMinSites: 1, DistributedThreshold: 9, DistributedSiteCap: 4})
	if RefusalReason(err) != "malformed" || !strings.Contains(err.Error(), "distributed_min_sites 1") {
		t.Fatalf("set_distributed with one site: %v", err)
	}
	if err := leader.operate(ctx, intel.OperatorCommand{Op: intel.OpSetDistributed, DistributedMinSites: 3, DistributedThreshold: 9, DistributedSiteCap: 4}); err != nil {
		t.Fatalf("set_distributed: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "every member to hold the distributed rule", func() bool { return n.c.Rules().DistributedMinSites == 3 })
	}
	if r := nodes[1].c.Rules(); r.DistributedThreshold != 9 || r.DistributedSiteCap != 4 || r.MinNodes != 2 {
		t.Fatalf("rules after set_distributed: %+v", r)
	}

	partials := func(ind intel.Indicator, counts ...int) [][]byte {
		now := time.Now().UTC()
		var out [][]byte
		for i, c := range counts {
			out = append(out, sealPartial(t, nodes[i].edKey(t), ind, now, now.Add(-time.Minute), c))
		}
		return out
	}
	commit := func(ip string, proofs [][]byte) {
		t.Helper()
		cmd := autoBlock(t, ip, time.Now().UTC(), time.Hour, proofs...)
		if err := nodes[2].c.Propose(ctx, cmd); err != nil {
			t.Fatalf("block of %s: %v", ip, err)
		}
		id := intel.PolicyID(intel.ActionBlock, mustIndicator(t, ip))
		for _, n := range nodes {
			waitFor(t, 20*time.Second, "every member to hold the block of "+ip, func() bool { _, ok := n.c.Policy(id, time.Now()); return ok })
		}
	}

	// k sites, 3+3+3 = 9: committed.
	ip := "203.0.113.102"
	commit(ip, partials(mustIndicator(t, ip), 3, 3, 3))
	// Full and partial: one fired (5, capped at 4), two did not (3 + 2).
	ip = "203.0.113.103"
	now = time.Now().UTC()
	i3 := mustIndicator(t, ip)
	commit(ip, [][]byte{
		sealSighting(t, nodes[0].edKey(t), proofSeq.Add(1), i3, now),
		sealPartial(t, nodes[1].edKey(t), i3, now, now.Add(-time.Minute), 3),
		sealPartial(t, nodes[2].edKey(t), i3, now, now.Add(-time.Minute), 2),
	})

	// k-1 sites, though each reports the most a site may count for.
	ind = mustIndicator(t, "203.0.113.104")
	two := partials(ind, 4, 4)
	two = append(two, sealPartial(t, nodes[0].edKey(t), ind, time.Now().UTC(), time.Now().UTC().Add(-time.Minute), 4))
	attack(t, nodes, autoBlock(t, ind.Value, time.Now().UTC(), time.Hour, two...), "partial_too_few_sites")
	// k sites, 2+2+2 = 6 < 9.
	ind = mustIndicator(t, "203.0.113.105")
	attack(t, nodes, autoBlock(t, ind.Value, time.Now().UTC(), time.Hour, partials(ind, 2, 2, 2)...), "partial_sum_short")
	// A member inflates its count: 10^9 counts for 4, and 4+1+1 < 9.
	ind = mustIndicator(t, "203.0.113.106")
	attack(t, nodes, autoBlock(t, ind.Value, time.Now().UTC(), time.Hour, partials(ind, 1_000_000_000, 1, 1)...), "partial_sum_short")
	// A partial that counts events from before the window.
	ind = mustIndicator(t, "203.0.113.107")
	now = time.Now().UTC()
	old := partials(ind, 3, 3)
	old = append(old, sealPartial(t, nodes[2].edKey(t), ind, now, now.Add(-11*time.Minute), 3))
	attack(t, nodes, autoBlock(t, ind.Value, now, time.Hour, old...), "partial_outside_window")
	// A partial sent before the window, as any stale proof.
	sent := now.Add(-20 * time.Minute)
	stale := append(partials(ind, 3, 3), sealPartial(t, nodes[2].edKey(t), ind, sent, sent.Add(-time.Minute), 3))
	attack(t, nodes, autoBlock(t, ind.Value, now, time.Hour, stale...), "proof_stale")
	// Partials never make up min_nodes: one full sighting and one partial
	// from two members fall to the distributed rule, which wants three.
	ind = mustIndicator(t, "203.0.113.108")
	now = time.Now().UTC()
	attack(t, nodes, autoBlock(t, ind.Value, now, time.Hour,
		sealSighting(t, nodes[0].edKey(t), proofSeq.Add(1), ind, now),
		sealPartial(t, nodes[1].edKey(t), ind, now, now.Add(-time.Minute), 4)), "partial_too_few_sites")
	// Full sightings alone, one short of min_nodes: the plain refusal.
	attack(t, nodes, autoBlock(t, ind.Value, now, time.Hour, sealSighting(t, nodes[0].edKey(t), proofSeq.Add(1), ind, now)), "too_few_signers")

	// Turned off again: all three 0.
	if err := nodes[0].operate(ctx, intel.OperatorCommand{Op: intel.OpSetDistributed}); err != nil {
		t.Fatalf("set_distributed off: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "every member to drop the distributed rule", func() bool { return !n.c.Rules().DistributedOn() })
	}
}

// The rule on one FSM, at its edges: exactly k sites and exactly the
// threshold commit, one event or one site less is refused; the rule
// survives a snapshot.
func TestDistributedRuleEdges(t *testing.T) {
	a := newApplier(t)
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpSetDistributed, DistributedMinSites: 5, DistributedThreshold: 20, DistributedSiteCap: 4}, t0))
	names := []string{"A", "B", "C", "D", "E", "F"}
	block := func(ind string, counts ...int) Command {
		var proofs [][]byte
		for i, c := range counts {
			a.memberID(names[i])
			proofs = append(proofs, sealPartial(t, a.members[names[i]], mustIndicator(t, ind), t0, t0.Add(-time.Minute), c))
		}
		return autoBlock(t, ind, t0, time.Hour, proofs...)
	}
	for _, tc := range []struct {
		ind    string
		counts []int
		reason string // "" committed
	}{
		{"203.0.113.201", []int{4, 4, 4, 4, 4}, ""},
		{"203.0.113.202", []int{4, 4, 4, 4, 3}, "partial_sum_short"},
		{"203.0.113.203", []int{9, 9, 9, 9}, "partial_too_few_sites"},
		{"203.0.113.204", []int{1, 1, 1, 1, 1, 15}, "partial_sum_short"},
		{"203.0.113.205", []int{3, 3, 3, 3, 4, 4}, ""},
	} {
		err := a.apply(block(tc.ind, tc.counts...))
		if got := RefusalReason(err); got != tc.reason {
			t.Errorf("%s %v: refused %q (%v), want %q", tc.ind, tc.counts, got, err, tc.reason)
		}
	}
	snap := snapshotBytes(t, a.f)
	b := newFSM(nil)
	b.mustRestore(t, snap)
	if r := b.rules; r.DistributedMinSites != 5 || r.DistributedThreshold != 20 || r.DistributedSiteCap != 4 {
		t.Fatalf("restored rules %+v", r)
	}
}
