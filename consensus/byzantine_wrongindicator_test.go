package consensus

import (
	"testing"
	"time"
)

// A member proves a block of one address with sightings of another.
func TestByzantineProofsNameAnotherIndicator(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	other := mustIndicator(t, "198.51.100.5")
	cmd := autoBlock(t, "203.0.113.70", now, time.Hour,
		sealSighting(t, nodes[0].edKey(t), proofSeq.Add(1), other, now),
		sealSighting(t, nodes[1].edKey(t), proofSeq.Add(1), other, now))
	attack(t, nodes, cmd, "proof_wrong_indicator")
}
