package consensus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// TestProposeRetryAfterCommittedAttempt: an operator command whose first
// attempt was committed although the attempt failed (leadership lost
// after the append) is refused as replayed_nonce when retried; the
// proposal reports success, and the command was applied once. The same
// signed command proposed again afresh is still refused.
func TestProposeRetryAfterCommittedAttempt(t *testing.T) {
	nodes := newCluster(t, 1)
	n := nodes[0]
	ind := mustIndicator(t, "198.51.100.9")
	s := signOp(t, testOperatorKey, n.c.MeshID(), time.Now().UTC(),
		intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "test"})
	cmd := Command{Type: CmdOperator, At: time.Now().UTC(), Operator: &s}
	data, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	attempts := 0
	err = n.c.retryCommand(ctx, CmdOperator, data, func(ctx context.Context) error {
		attempts++
		if attempts == 1 {
			if err := n.c.applyLocal(ctx, data); err != nil {
				t.Fatalf("first attempt: %v", err)
			}
			return fmt.Errorf("apply: %w", raft.ErrLeadershipLost)
		}
		return n.c.proposeOnce(ctx, data, nil, 0)
	})
	if err != nil {
		t.Fatalf("a retry of a committed operator command: %v, want success", err)
	}
	if attempts != 2 {
		t.Fatalf("%d attempts, want 2", attempts)
	}
	if !hasPolicy(n.c, intel.PolicyID(intel.ActionBlock, ind)) {
		t.Fatal("the block is not held")
	}

	// Proposed afresh, the same command is a replay.
	err = n.c.Propose(ctx, cmd)
	if RefusalReason(err) != reasonReplayedNonce {
		t.Fatalf("the command proposed again: %v, want a replayed_nonce refusal", err)
	}
}
