package consensus

import (
	"testing"
	"time"
)

// A member signs two sightings itself: one key counts once.
func TestByzantineTwoProofsFromOneKey(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	ind := mustIndicator(t, "203.0.113.68")
	k := nodes[1].edKey(t)
	cmd := autoBlock(t, "203.0.113.68", now, time.Hour,
		sealSighting(t, k, proofSeq.Add(1), ind, now),
		sealSighting(t, k, proofSeq.Add(1), ind, now.Add(-time.Second)))
	attack(t, nodes, cmd, "too_few_signers")
}
