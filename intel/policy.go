package intel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidPolicy is wrapped by every policy validation error.
var ErrInvalidPolicy = errors.New("invalid policy")

// Action is what a policy asks every node to do about an indicator.
type Action string

// Policy actions. Allow beats block.
const (
	ActionBlock   Action = "block"
	ActionAllow   Action = "allow"
	ActionObserve Action = "observe"
)

// Evidence points at one signed sighting that supports a policy.
type Evidence struct {
	Origin   string    `json:"origin"` // node ID of the signer
	Seq      uint64    `json:"seq"`    // the envelope's per-origin sequence number
	Detector string    `json:"detector,omitempty"`
	Seen     time.Time `json:"seen"`
}

// Policy is a mesh-wide (committed through consensus) or local decision
// about an indicator. Its ID is derived from the action and the indicator,
// so proposing the same policy twice yields one policy.
type Policy struct {
	ID        string     `json:"id"`
	Action    Action     `json:"action"`
	Indicator Indicator  `json:"indicator"`
	Reason    string     `json:"reason,omitempty"`
	Evidence  []Evidence `json:"evidence,omitempty"`
	Author    string     `json:"author"` // node ID, or "operator:<name>"
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at,omitzero"` // zero: never expires
}

// PolicyID is the deterministic ID of the policy taking action on ind.
func PolicyID(action Action, ind Indicator) string {
	h := sha256.Sum256([]byte(string(action) + "\x00" + ind.Key()))
	return hex.EncodeToString(h[:8])
}

// NewPolicy builds a policy with its ID filled in and its expiry set to
// created+ttl (ttl 0 means no expiry).
func NewPolicy(action Action, ind Indicator, reason, author string, created time.Time, ttl time.Duration) Policy {
	p := Policy{
		ID:        PolicyID(action, ind),
		Action:    action,
		Indicator: ind,
		Reason:    reason,
		Author:    author,
		CreatedAt: created.UTC(),
	}
	if ttl > 0 {
		p.ExpiresAt = p.CreatedAt.Add(ttl)
	}
	return p
}

// Active reports whether the policy is in force at now.
func (p Policy) Active(now time.Time) bool {
	return p.ExpiresAt.IsZero() || now.Before(p.ExpiresAt)
}

// Validate checks the policy's fields, including that its ID matches.
func (p Policy) Validate() error {
	switch p.Action {
	case ActionBlock, ActionAllow, ActionObserve:
	default:
		return fmt.Errorf("%w: action %q (want block, allow or observe)", ErrInvalidPolicy, p.Action)
	}
	if err := p.Indicator.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if want := PolicyID(p.Action, p.Indicator); p.ID != want {
		return fmt.Errorf("%w: id %q does not match action and indicator (want %q)", ErrInvalidPolicy, p.ID, want)
	}
	if p.Author == "" {
		return fmt.Errorf("%w: author is required", ErrInvalidPolicy)
	}
	if p.CreatedAt.IsZero() {
		return fmt.Errorf("%w: created_at is required", ErrInvalidPolicy)
	}
	if !p.ExpiresAt.IsZero() && !p.ExpiresAt.After(p.CreatedAt) {
		return fmt.Errorf("%w: expires_at %s is not after created_at %s", ErrInvalidPolicy, p.ExpiresAt.Format(time.RFC3339), p.CreatedAt.Format(time.RFC3339))
	}
	if len(p.Reason) > 1024 {
		return fmt.Errorf("%w: reason is %d bytes, limit 1024", ErrInvalidPolicy, len(p.Reason))
	}
	return nil
}
