package nft

import (
	"context"
	"sync"

	"github.com/meshward/meshward/responders"
)

// SegmentEnforcer keeps one Firewall enforcing the latest compiled
// segmentation, and is the compliance check of it
// (responders.ComplianceCheck): Drift compares the kernel with the
// program last set, Repair applies it again in one transaction.
type SegmentEnforcer struct {
	fw *Firewall

	mu   sync.Mutex
	prog *SegmentProgram
}

var _ responders.ComplianceCheck = (*SegmentEnforcer)(nil)

// NewSegmentEnforcer returns an enforcer of fw that enforces nothing
// until Set.
func NewSegmentEnforcer(fw *Firewall) *SegmentEnforcer { return &SegmentEnforcer{fw: fw} }

// Set makes p the program to enforce and applies it unless its hash is
// the one in force. It reports whether a transaction was sent. On error
// p stays the program to enforce, so that a check finds the drift and
// repairs it.
func (e *SegmentEnforcer) Set(ctx context.Context, p *SegmentProgram) (bool, error) {
	e.mu.Lock()
	e.prog = p
	e.mu.Unlock()
	return e.fw.ApplySegmentation(ctx, p, false)
}

// Program returns the program to enforce (nil before Set).
func (e *SegmentEnforcer) Program() *SegmentProgram {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.prog
}

// Name implements responders.ComplianceCheck.
func (e *SegmentEnforcer) Name() string { return "segmentation" }

// Drift implements responders.ComplianceCheck.
func (e *SegmentEnforcer) Drift(ctx context.Context) ([]string, error) {
	p := e.Program()
	if p == nil {
		return nil, nil
	}
	return e.fw.SegmentDrift(ctx, p)
}

// Repair implements responders.ComplianceCheck.
func (e *SegmentEnforcer) Repair(ctx context.Context) error {
	p := e.Program()
	if p == nil {
		return nil
	}
	_, err := e.fw.ApplySegmentation(ctx, p, true)
	return err
}
