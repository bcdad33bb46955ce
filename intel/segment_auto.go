package intel

import (
	"fmt"
	"slices"
	"time"
)

// Automatic quarantine: a zone may name the detection rules whose
// sightings of one of its hosts quarantine that host without an operator.
// The FSM accepts such a quarantine only with the signed sightings of at
// least MinNodes distinct members, for at most MaxTTL, and never of a
// member's address, a protected range or a local address.
//
// The trust trade-off: inside a zone usually only the local site sees its
// hosts, so MinNodes defaults to 1, and then one member (one compromised
// node) can quarantine any host of a zone that allows it, for at most
// MaxTTL at a time. That is the bound an operator accepts by listing a
// rule; a zone that must not be isolated on one node's word sets MinNodes
// higher or lists no rules.

// Bounds of automatic quarantine.
const (
	MaxAutoQuarantineRules = 16
	MaxAutoQuarantineNodes = 64
	MaxRuleName            = 128
	// DefaultAutoQuarantineTTL is MaxTTL when the zone leaves it 0.
	DefaultAutoQuarantineTTL = time.Hour
)

// AutoQuarantine is a zone's automatic quarantine rule.
type AutoQuarantine struct {
	// Rules are the detection rule names (Sighting.Detector) allowed to
	// quarantine a host of the zone.
	Rules []string `json:"rules"`
	// MinNodes is how many distinct members must have signed a
	// sighting of the host by one of Rules (0 means 1).
	MinNodes int `json:"min_nodes,omitempty"`
	// MaxTTLSeconds bounds the quarantine (0 means
	// DefaultAutoQuarantineTTL).
	MaxTTLSeconds int64 `json:"max_ttl_seconds,omitempty"`
}

// Nodes is MinNodes with its default.
func (a AutoQuarantine) Nodes() int { return max(a.MinNodes, 1) }

// MaxTTL is MaxTTLSeconds as a duration, with its default.
func (a AutoQuarantine) MaxTTL() time.Duration {
	if a.MaxTTLSeconds == 0 {
		return DefaultAutoQuarantineTTL
	}
	return time.Duration(a.MaxTTLSeconds) * time.Second
}

// Allows reports whether rule may quarantine a host of the zone.
func (a AutoQuarantine) Allows(rule string) bool { return slices.Contains(a.Rules, rule) }

// Validate checks the fields; each error names the field.
func (a AutoQuarantine) Validate() error {
	if n := len(a.Rules); n == 0 || n > MaxAutoQuarantineRules {
		return fmt.Errorf("%w: auto_quarantine.rules: %d rules, want 1..%d", ErrInvalidSegment, n, MaxAutoQuarantineRules)
	}
	for i, r := range a.Rules {
		if r == "" || len(r) > MaxRuleName {
			return fmt.Errorf("%w: auto_quarantine.rules[%d]: want 1..%d bytes", ErrInvalidSegment, i, MaxRuleName)
		}
		if slices.Contains(a.Rules[:i], r) {
			return fmt.Errorf("%w: auto_quarantine.rules[%d] %q repeated", ErrInvalidSegment, i, r)
		}
	}
	if a.MinNodes < 0 || a.MinNodes > MaxAutoQuarantineNodes {
		return fmt.Errorf("%w: auto_quarantine.min_nodes %d: want 0..%d", ErrInvalidSegment, a.MinNodes, MaxAutoQuarantineNodes)
	}
	if a.MaxTTLSeconds < 0 || a.MaxTTL() > MaxQuarantineTTL {
		return fmt.Errorf("%w: auto_quarantine.max_ttl_seconds %d: want 0..%d", ErrInvalidSegment, a.MaxTTLSeconds, int64(MaxQuarantineTTL/time.Second))
	}
	return nil
}
