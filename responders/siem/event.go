package siem

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
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
	KindAlert           Kind = "alert"             // an alerting rule fired, reminded or resolved
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

	// Alerts (kind alert): Severity is the alert's, Reason its detail.
	Alert *AlertInfo `json:"alert,omitempty"`

	// Sinks, when not empty, restricts delivery to the sinks of these
	// classes (SinkClass); it is not part of the event's encoding.
	Sinks []string `json:"-"`
}

// AlertInfo is what an alert event says of its alert.
type AlertInfo struct {
	ID    string    `json:"id"`    // stable per rule and group
	Rule  string    `json:"rule"`  // the rule's name
	On    string    `json:"on"`    // what the rule watches: an event kind, or "metric"
	State string    `json:"state"` // firing or resolved
	Group string    `json:"group"` // the group de-duplicated on ("indicator=ipv4:192.0.2.1")
	Since time.Time `json:"since"` // firing since
	// Repeat is 0 for the first notification of a firing, n for the n-th
	// reminder.
	Repeat int `json:"repeat,omitempty"`
	// Events is how many events fed the alert while it fired.
	Events int `json:"events,omitempty"`
}

// Sink classes, the names an event's Sinks lists.
const (
	SinkClassWebhook   = "webhook"
	SinkClassSyslog    = "syslog"
	SinkClassJSONLines = "json_lines"
)

// SinkClass is the class of the sink named name (Sink.Name).
func SinkClass(name string) string {
	switch {
	case name == "jsonl":
		return SinkClassJSONLines
	case strings.HasPrefix(name, "syslog"):
		return SinkClassSyslog
	}
	return name
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
