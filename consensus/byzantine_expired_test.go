package consensus

import (
	"testing"
	"time"
)

// A member holds an operator's command back until it expired, or
// presents one issued in the future.
func TestByzantineExpiredOperatorCommand(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	mesh := nodes[0].c.MeshID()
	s := signOp(t, testOperatorKey, mesh, now.Add(-30*time.Minute), blockOp(t, "203.0.113.74", time.Hour))
	attack(t, nodes, opCmd(s, now), "expired")
	s = signOp(t, testOperatorKey, mesh, now.Add(time.Hour), blockOp(t, "203.0.113.74", time.Hour))
	attack(t, nodes, opCmd(s, now), "expired")
}
