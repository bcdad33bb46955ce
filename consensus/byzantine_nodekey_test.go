package consensus

import (
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A member signs an operator command with its own node key, and an admin
// is tricked into registering a member's node key as an operator key.
func TestByzantineNodeKeyAsOperatorKey(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	mesh := nodes[0].c.MeshID()
	attack(t, nodes, opCmd(signOp(t, nodes[1].edKey(t), mesh, now, blockOp(t, "203.0.113.76", time.Hour)), now), "not_operator")
	add := intel.OperatorCommand{Op: intel.OpAddOperator, OperatorKey: nodes[1].edKey(t).Public().(ed25519PublicKey),
		OperatorRole: intel.OperatorAdmin, OperatorName: "node"}
	attack(t, nodes, opCmd(signOp(t, testOperatorKey, mesh, now, add), now), "node_key")
}
