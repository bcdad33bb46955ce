package consensus

import (
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// Over-broad blocks and loopback, proven by real members' sightings or
// signed by an admin without (or, for loopback, with) the wide flag.
func TestByzantineOverBroadBlocks(t *testing.T) {
	nodes := byzantineCluster(t)
	mesh := nodes[0].c.MeshID()
	for _, ind := range []string{"::/0", "0.0.0.0/5", "10.0.0.0/8", "com", "co.uk"} {
		t.Run(ind, func(t *testing.T) {
			attack(t, nodes, proveBlock(t, ind, nodes[0], nodes[1]), "floor")
			now := time.Now().UTC()
			attack(t, nodes, opCmd(signOp(t, testOperatorKey, mesh, now, blockOp(t, ind, time.Hour)), now), "floor")
		})
	}
}

func TestByzantineLoopbackBlock(t *testing.T) {
	nodes := byzantineCluster(t)
	mesh := nodes[0].c.MeshID()
	for _, ind := range []string{"127.0.0.1", "::1", "169.254.1.1", "127.0.0.0/8"} {
		t.Run(ind, func(t *testing.T) {
			attack(t, nodes, proveBlock(t, ind, nodes[0], nodes[1]), "floor")
			now := time.Now().UTC()
			wide := blockOp(t, ind, time.Hour)
			wide.Wide = true // an admin's wide flag lifts breadth, never the address classes
			attack(t, nodes, opCmd(signOp(t, testOperatorKey, mesh, now, wide), now), "floor")
		})
	}
}

func TestByzantineAllowEverything(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	p := intel.NewPolicy(intel.ActionAllow, mustIndicator(t, "0.0.0.0/0"), "lift every block", nodes[1].id(), now, 0)
	attack(t, nodes, Command{Type: CmdPutPolicy, At: now, Policy: &p, Proofs: proveBlock(t, "0.0.0.0/0", nodes[0], nodes[1]).Proofs}, "action")
	mesh := nodes[0].c.MeshID()
	attack(t, nodes, opCmd(signOp(t, testOperatorKey, mesh, now, allowOp(t, "0.0.0.0/0", time.Hour)), now), "floor")
}
