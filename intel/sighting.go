package intel

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidSighting is wrapped by every sighting validation error.
var ErrInvalidSighting = errors.New("invalid sighting")

// ErrSightingFromFuture is wrapped by CheckSightingAt's error: the
// sighting says it saw something after the envelope that carries it was
// sealed.
var ErrSightingFromFuture = errors.New("sighting seen after its envelope was sealed")

// SightingSkew is how far a sighting's times may lie after its envelope's
// time. A node reports its detections at its own clock and seals them
// after, so only clock steps and rounding need room; a sighting further
// ahead would stay fresh for corroboration windows it never lived in.
const SightingSkew = 2 * time.Minute

// Severity of a detection, as a SOC would triage it.
type Severity string

// Severities, lowest first.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Sighting is one node's report that it saw an indicator misbehave: which
// detector fired, on how many events, between which times. The reporting
// node is not a field: it is the signer of the Envelope that carries the
// sighting, so it cannot be forged.
type Sighting struct {
	Indicator  Indicator `json:"indicator"`
	Detector   string    `json:"detector"`            // rule name, e.g. "ssh-bruteforce"
	Technique  string    `json:"technique,omitempty"` // MITRE ATT&CK id, e.g. "T1110.001"
	Severity   Severity  `json:"severity,omitempty"`
	Confidence int       `json:"confidence"` // 0..100
	Count      int       `json:"count"`      // events that made up the detection
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	Site       string    `json:"site,omitempty"`
	// Partial marks a sub-threshold summary: the rule did not fire, and
	// Count is how many of its events the source caused between
	// FirstSeen and LastSeen (events not summarised before). A partial
	// is never a detection: only the mesh's distributed rule, summing
	// the partials of several sites, may turn it into evidence.
	Partial bool `json:"partial,omitempty"`
}

// Validate checks the sighting's fields.
func (s Sighting) Validate() error {
	if err := s.Indicator.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSighting, err)
	}
	switch {
	case s.Detector == "" || len(s.Detector) > 128:
		return fmt.Errorf("%w: detector must be 1 to 128 bytes, got %d", ErrInvalidSighting, len(s.Detector))
	case len(s.Technique) > 32:
		return fmt.Errorf("%w: technique is %d bytes, limit 32", ErrInvalidSighting, len(s.Technique))
	case len(s.Site) > 128:
		return fmt.Errorf("%w: site is %d bytes, limit 128", ErrInvalidSighting, len(s.Site))
	case s.Confidence < 0 || s.Confidence > 100:
		return fmt.Errorf("%w: confidence %d out of range 0..100", ErrInvalidSighting, s.Confidence)
	case s.Count < 1:
		return fmt.Errorf("%w: count %d, want at least 1", ErrInvalidSighting, s.Count)
	case s.FirstSeen.IsZero() || s.LastSeen.IsZero():
		return fmt.Errorf("%w: first_seen and last_seen are required", ErrInvalidSighting)
	case s.LastSeen.Before(s.FirstSeen):
		return fmt.Errorf("%w: last_seen %s is before first_seen %s", ErrInvalidSighting, s.LastSeen.Format(time.RFC3339), s.FirstSeen.Format(time.RFC3339))
	}
	switch s.Severity {
	case "", SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
	default:
		return fmt.Errorf("%w: severity %q (want low, medium, high or critical)", ErrInvalidSighting, s.Severity)
	}
	return nil
}

// CheckSightingAt checks that s saw nothing after at, the time of the
// envelope that carries it, plus skew (a negative skew counts as 0): a
// FirstSeen or LastSeen beyond it is refused with an error that wraps
// ErrSightingFromFuture and ErrInvalidSighting and names the field, its
// time and the bound. It does not run Validate.
func CheckSightingAt(s Sighting, at time.Time, skew time.Duration) error {
	bound := at.Add(max(skew, 0))
	for _, f := range [...]struct {
		name string
		t    time.Time
	}{{"last_seen", s.LastSeen}, {"first_seen", s.FirstSeen}} {
		if f.t.After(bound) {
			return fmt.Errorf("%w: %w: %s %s is %s after the envelope time %s (skew %s)", ErrInvalidSighting, ErrSightingFromFuture,
				f.name, f.t.UTC().Format(time.RFC3339Nano), f.t.Sub(at), at.UTC().Format(time.RFC3339Nano), max(skew, 0))
		}
	}
	return nil
}

// DecodeSightingAt is DecodeSighting followed by CheckSightingAt against
// the envelope's own time: what a node receiving a sighting, by gossip or
// anti-entropy, or checking one as evidence, should call. Every error
// wraps ErrMalformed; one from the future also ErrSightingFromFuture.
func DecodeSightingAt(e *Envelope, skew time.Duration) (Sighting, error) {
	s, err := DecodeSighting(e)
	if err != nil {
		return s, err
	}
	if err := CheckSightingAt(s, e.Time, skew); err != nil {
		return s, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}
