package siem

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/meshward/meshward/intel"
)

// Kind says what happened.
type Kind string

// Event kinds.
const (
	KindDetection       Kind = "detection"         // a local detector fired
	KindSighting        Kind = "sighting_received" // a signed sighting arrived from another node
	KindPolicyCommitted Kind = "policy_committed"  // a mesh policy was committed
	KindPolicyEnforced  Kind = "policy_enforced"   // a backend applied a block
	KindPolicyExpired   Kind = "policy_expired"    // a policy reached its expiry
)

// Event is one security event, the common shape of everything the node
// reports to a SIEM or a SOAR. Fields that do not apply are left zero.
type Event struct {
	ID        string          `json:"id"` // unique, for deduplication downstream
	Kind      Kind            `json:"kind"`
	Time      time.Time       `json:"time"`
	Node      string          `json:"node,omitempty"` // the reporting node
	Indicator intel.Indicator `json:"indicator"`

	// Detections and sightings.
	Origin     string         `json:"origin,omitempty"` // node that signed the sighting
	Detector   string         `json:"detector,omitempty"`
	Technique  string         `json:"technique,omitempty"`
	Severity   intel.Severity `json:"severity,omitempty"`
	Confidence int            `json:"confidence,omitempty"`
	Count      int            `json:"count,omitempty"`

	// Policies.
	PolicyID  string       `json:"policy_id,omitempty"`
	Action    intel.Action `json:"action,omitempty"`
	Author    string       `json:"author,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	ExpiresAt time.Time    `json:"expires_at,omitzero"`
	Backend   string       `json:"backend,omitempty"` // for policy_enforced
}

// NewID returns a random event ID (128 bits, hex).
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// DetectionEvent reports a local detection.
func DetectionEvent(node string, s intel.Sighting, at time.Time) Event {
	return Event{ID: NewID(), Kind: KindDetection, Time: at.UTC(), Node: node, Indicator: s.Indicator,
		Origin: node, Detector: s.Detector, Technique: s.Technique, Severity: s.Severity,
		Confidence: s.Confidence, Count: s.Count}
}

// SightingEvent reports a sighting received from origin.
func SightingEvent(node, origin string, s intel.Sighting, at time.Time) Event {
	e := DetectionEvent(node, s, at)
	e.Kind, e.Origin = KindSighting, origin
	return e
}

// PolicyEvent reports a policy committed, enforced (backend set) or
// expired.
func PolicyEvent(kind Kind, node string, p intel.Policy, backend string, at time.Time) Event {
	return Event{ID: NewID(), Kind: kind, Time: at.UTC(), Node: node, Indicator: p.Indicator,
		PolicyID: p.ID, Action: p.Action, Author: p.Author, Reason: p.Reason,
		ExpiresAt: p.ExpiresAt, Backend: backend}
}
