package admin

import (
	"context"
	"fmt"
	"time"

	"github.com/meshward/meshward/responders"
)

// ComplianceService is the node's continuous compliance: whether the
// kernel enforces what the node should (blocks, segmentation), since
// when not, and why. A Node that does not implement it answers
// GET /v1/compliance with 503.
type ComplianceService interface {
	Compliance(ctx context.Context) (ComplianceReport, error)
}

// ComplianceReport is GET /v1/compliance: the node's compliance as of
// its last check, and what it enforces of the segmentation.
type ComplianceReport struct {
	Node string `json:"node"`
	Site string `json:"site"`
	responders.ComplianceStatus
	Segmentation SegmentationStatus `json:"segmentation"`
}

// SegmentationStatus is what a node enforces of the mesh's segmentation.
type SegmentationStatus struct {
	// Enforced is true when the compiled program is applied to
	// nftables; false in dry run (computed and reported only).
	Enforced bool `json:"enforced"`
	// Hash identifies the compiled program; empty before the first.
	Hash string `json:"hash,omitempty"`
	// Zones, Flows and Quarantined count what applies on this site.
	Zones       int `json:"zones"`
	Flows       int `json:"flows"`
	Quarantined int `json:"quarantined"`
	// InputRules and ForwardRules count the compiled rules.
	InputRules   int `json:"input_rules"`
	ForwardRules int `json:"forward_rules"`
	// CompiledAt and AppliedAt (zero in dry run) are the last times.
	CompiledAt time.Time `json:"compiled_at,omitzero"`
	AppliedAt  time.Time `json:"applied_at,omitzero"`
	// Error is the last compile or apply error.
	Error string `json:"error,omitempty"`
}

func getCompliance(s *Server, c *call) (any, error) {
	cs, ok := s.opts.Node.(ComplianceService)
	if !ok {
		return nil, fmt.Errorf("%w: this node does not track compliance", ErrUnavailable)
	}
	return cs.Compliance(c.r.Context())
}

// Compliance returns the node's compliance.
func (c *Client) Compliance(ctx context.Context) (ComplianceReport, error) {
	var out ComplianceReport
	return out, c.do(ctx, "GET", "/v1/compliance", nil, nil, &out)
}
