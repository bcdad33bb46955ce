package consensus

import (
	"testing"
	"time"
)

// A member replays sightings older than the window W (10 minutes here).
func TestByzantineStaleProofs(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	old := now.Add(-20 * time.Minute)
	ind := mustIndicator(t, "203.0.113.67")
	cmd := autoBlock(t, "203.0.113.67", now, time.Hour,
		sealSighting(t, nodes[0].edKey(t), proofSeq.Add(1), ind, old),
		sealSighting(t, nodes[1].edKey(t), proofSeq.Add(1), ind, old))
	attack(t, nodes, cmd, "proof_stale")
	// A sighting whose last-seen lies after the envelope's time.
	s := sealSightingLastSeen(t, nodes[0], ind, now, now.Add(10*time.Minute))
	cmd = autoBlock(t, "203.0.113.67", now, time.Hour, s, sealSighting(t, nodes[1].edKey(t), proofSeq.Add(1), ind, now))
	attack(t, nodes, cmd, "proof_time")
}
