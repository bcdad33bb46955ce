package process

import (
	"context"
	"time"
)

// Transition is a change of a node's compliance: its enforced state went
// out of line with the desired one at At (Out), or came back at At.
type Transition struct {
	// Subject names what is out of compliance: the node as a whole ("")
	// or one part of it (a responder backend, a policy); at most 128
	// bytes.
	Subject string    `json:"subject,omitempty"`
	Out     bool      `json:"out"`
	At      time.Time `json:"at"`
}

// ComplianceSource is what tells the process measurement of compliance
// transitions: the node's compliance check.
type ComplianceSource interface {
	// WatchCompliance calls fn with every transition, in the order they
	// happened, until ctx ends; it returns when ctx has ended.
	WatchCompliance(ctx context.Context, fn func(Transition))
}

// Span is one stretch out of compliance: from Out to Back (zero while
// still out).
type Span struct {
	Subject string    `json:"subject,omitempty"`
	Out     time.Time `json:"out"`
	Back    time.Time `json:"back,omitzero"`
}

// Duration is the span's length at time now (to now while still out).
func (s Span) Duration(now time.Time) time.Duration {
	end := s.Back
	if end.IsZero() {
		end = now
	}
	return max(end.Sub(s.Out), 0)
}
