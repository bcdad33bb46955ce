package consensus

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A responder operator's key signs what only an admin may.
func TestByzantineResponderSignsAdminCommand(t *testing.T) {
	nodes := byzantineCluster(t)
	responder := seededKey("responder")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[0].operate(ctx, intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: responder.Public().(ed25519.PublicKey),
		OperatorRole: intel.OperatorResponder, OperatorName: "soc"}); err != nil {
		t.Fatalf("add the responder: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "two operators everywhere", func() bool { return len(n.c.Operators()) == 2 })
	}
	now := time.Now().UTC()
	mesh := nodes[0].c.MeshID()
	for _, cmd := range []intel.OperatorCommand{
		{Op: intel.OpRemoveMember, Member: nodes[2].id()},
		{Op: intel.OpProtect, Prefix: "198.51.100.0/24"},
		{Op: intel.OpAddOperator, OperatorKey: seededKey("friend").Public().(ed25519.PublicKey), OperatorRole: intel.OperatorAdmin, OperatorName: "friend"},
		{Op: intel.OpSetCorroboration, MinNodes: 1, WindowSeconds: 3600},
		func() intel.OperatorCommand { c := blockOp(t, "10.0.0.0/8", time.Hour); c.Wide = true; return c }(),
		// The rules of automatic blocking, feed policies and the
		// warninglist are an admin's too.
		{Op: intel.OpSetMinRisk, MinRisk: 40},
		{Op: intel.OpSetDistributed, DistributedMinSites: 5, DistributedThreshold: 20, DistributedSiteCap: 4},
		setFeedOp(testFeed()),
		{Op: intel.OpRemoveFeedPolicy, FeedPolicyName: "feodo"},
		warnOp(intel.OpWarninglistAdd, mustIndicator(t, "198.51.100.0/24")),
		warnOp(intel.OpWarninglistRemove, mustIndicator(t, "198.51.100.0/24")),
	} {
		attack(t, nodes, opCmd(signOp(t, responder, mesh, now, cmd), now), "role")
	}
	// Within its role, beyond its TTL cap.
	attack(t, nodes, opCmd(signOp(t, responder, mesh, now, blockOp(t, "203.0.113.75", 0)), now), "ttl_cap")
	attack(t, nodes, opCmd(signOp(t, responder, mesh, now, blockOp(t, "203.0.113.75", 30*24*time.Hour)), now), "ttl_cap")

	// The same rules hold for a bulk command: a wide one needs an admin,
	// and a responder's lasts at most its cap; a key that is no operator
	// signs nothing.
	inds := func(values ...string) []intel.Indicator {
		out := make([]intel.Indicator, len(values))
		for i, v := range values {
			ind, err := intel.ParseIndicator(v)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = ind
		}
		return out
	}
	attack(t, nodes, opCmd(signOp(t, responder, mesh, now, intel.OperatorCommand{Op: intel.OpBlockBulk,
		Indicators: inds("203.0.113.76", "10.0.0.0/8"), TTLSeconds: 3600, Wide: true}), now), "role")
	attack(t, nodes, opCmd(signOp(t, responder, mesh, now, intel.OperatorCommand{Op: intel.OpBlockBulk,
		Indicators: inds("203.0.113.77", "203.0.113.78")}), now), "ttl_cap")
	attack(t, nodes, opCmd(signOp(t, seededKey("stranger"), mesh, now, intel.OperatorCommand{Op: intel.OpBlockBulk,
		Indicators: inds("203.0.113.79", "203.0.113.80"), TTLSeconds: 3600}), now), "not_operator")
}
