package consensus

import (
	"context"
	"testing"
	"time"
)

// A member replays an operator's committed command (same nonce).
func TestByzantineReplayedOperatorCommand(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	s := signOp(t, testOperatorKey, nodes[0].c.MeshID(), now, blockOp(t, "203.0.113.72", time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[1].c.ProposeOperator(ctx, s); err != nil {
		t.Fatalf("the operator's own command: %v", err)
	}
	id := opCmd(s, now)
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "the block everywhere", func() bool { return len(n.c.Policies(time.Now())) == 1 })
	}
	// Revoked by the operator, then replayed by the attacker to bring it back.
	if err := nodes[2].operate(ctx, revokeAll(nodes[0].c)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "the revocation everywhere", func() bool { return len(n.c.Policies(time.Now())) == 0 })
	}
	attack(t, nodes, id, "replayed_nonce")
}
