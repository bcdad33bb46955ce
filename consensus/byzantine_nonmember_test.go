package consensus

import (
	"testing"
	"time"
)

// A member adds sightings signed by keys that are not on the roster.
func TestByzantineProofsFromNonMembers(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	ind := mustIndicator(t, "203.0.113.69")
	cmd := autoBlock(t, "203.0.113.69", now, time.Hour,
		sealSighting(t, nodes[1].edKey(t), proofSeq.Add(1), ind, now),
		sealSighting(t, seededKey("sybil"), 1, ind, now))
	attack(t, nodes, cmd, "proof_not_member")
	// A proof whose signature does not verify.
	forged := sealSighting(t, nodes[0].edKey(t), proofSeq.Add(1), ind, now)
	forged[len(forged)-1] ^= 1
	cmd = autoBlock(t, "203.0.113.69", now, time.Hour, sealSighting(t, nodes[1].edKey(t), proofSeq.Add(1), ind, now), forged)
	attack(t, nodes, cmd, "bad_signature")
}
