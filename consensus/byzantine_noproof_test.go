package consensus

import (
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A member proposes a block with no proof, and the raw commands that once
// changed the mesh on a member's word.
func TestByzantineRawProposalsWithoutProof(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	p := intel.NewPolicy(intel.ActionBlock, mustIndicator(t, "203.0.113.66"), "no proof", nodes[1].id(), now, time.Hour)
	attack(t, nodes, Command{Type: CmdPutPolicy, At: now, Policy: &p}, "no_proof")
	attack(t, nodes, Command{Type: CmdRevokePolicy, At: now, PolicyID: p.ID}, "unsigned")
	attack(t, nodes, Command{Type: CmdProtect, At: now, Prefix: "203.0.113.0/24"}, "unsigned")
	attack(t, nodes, Command{Type: CmdUnprotect, At: now, Prefix: "203.0.113.0/24"}, "unsigned")
	obs := intel.NewPolicy(intel.ActionObserve, mustIndicator(t, "203.0.113.66"), "observe", nodes[1].id(), now, time.Hour)
	attack(t, nodes, Command{Type: CmdPutPolicy, At: now, Policy: &obs, Proofs: proveBlock(t, "203.0.113.66", nodes[0], nodes[1]).Proofs}, "action")
}
