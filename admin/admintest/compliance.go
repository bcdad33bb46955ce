package admintest

import (
	"context"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/responders"
)

var _ admin.ComplianceService = (*Node)(nil)

// Compliance implements admin.ComplianceService with a fixed story: out
// of compliance for a minute before the node's clock (one segmentation
// rule deleted), after a drift of 1.5s repaired an hour earlier; the
// segmentation counts are those the zone and flow commands committed.
func (n *Node) Compliance(context.Context) (admin.ComplianceReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if n.Clock != nil {
		now = n.Clock()
	}
	now = now.UTC()
	back := now.Add(-time.Hour)
	return admin.ComplianceReport{
		Node: n.NodeID, Site: n.St.Node.Site,
		ComplianceStatus: responders.ComplianceStatus{
			OutSince:  now.Add(-time.Minute),
			Reasons:   []string{"segmentation: flow office-db: 1 of its rules missing from seg-input"},
			CheckedAt: now,
			LastDrift: &responders.ComplianceTransition{Compliant: true, At: back, OutSince: back.Add(-1500 * time.Millisecond),
				Out: 1500 * time.Millisecond, Reasons: []string{"blocks: 12 blocks missing from nftables"}},
			Checks: 40, Drifts: 2, Repairs: 2, RepairFailures: 1,
		},
		Segmentation: admin.SegmentationStatus{Enforced: true, Hash: "0123456789abcdef", Zones: len(n.seg.Zones),
			Flows: len(n.seg.Flows), Quarantined: len(n.seg.Quarantines), InputRules: 7, ForwardRules: 5,
			CompiledAt: back, AppliedAt: back},
	}, nil
}
