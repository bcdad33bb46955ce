package consensus

import (
	"testing"
	"time"
)

// A member replays an operator's command signed for another mesh.
func TestByzantineOperatorCommandForAnotherMesh(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	s := signOp(t, testOperatorKey, "ffeeddccbbaa99887766554433221100", now, blockOp(t, "203.0.113.73", time.Hour))
	attack(t, nodes, opCmd(s, now), "wrong_mesh")
}
