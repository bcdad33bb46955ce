package consensus

import (
	"testing"
	"time"
)

// A member alters an operator's signed command, or signs one with a key
// that is not an operator's.
func TestByzantineForgedOperatorSignature(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	mesh := nodes[0].c.MeshID()
	s := signOp(t, testOperatorKey, mesh, now, blockOp(t, "203.0.113.71", time.Hour))
	s.Sig[0] ^= 1
	attack(t, nodes, opCmd(s, now), "bad_signature")
	s = signOp(t, seededKey("stranger"), mesh, now, blockOp(t, "203.0.113.71", time.Hour))
	attack(t, nodes, opCmd(s, now), "not_operator")
}
