package intel

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidSighting is wrapped by every sighting validation error.
var ErrInvalidSighting = errors.New("invalid sighting")

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
