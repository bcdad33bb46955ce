package intel

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidReport is wrapped by every indicator report validation error.
var ErrInvalidReport = errors.New("invalid indicator report")

// Bounds of an IndicatorReport's fields.
const (
	MaxReportSource      = 128
	MaxReportLabels      = 16
	MaxReportLabel       = 64
	MaxReportTechnique   = 32
	MaxReportDescription = 1024
)

// IndicatorReport is an indicator shared mesh-wide by an operator or a
// threat feed, the payload of a KindIndicator envelope. It is
// intelligence, not policy: it informs analysts and scoring and never
// blocks anything by itself. Like a sighting's, the reporting node is the
// envelope's signer, not a field.
type IndicatorReport struct {
	Indicator Indicator `json:"indicator"`
	// Source is the feed's name or "operator:<name>".
	Source      string    `json:"source"`
	Confidence  int       `json:"confidence"`       // 0..100
	Labels      []string  `json:"labels,omitempty"` // e.g. "botnet", "c2"
	Technique   string    `json:"technique,omitempty"`
	Description string    `json:"description,omitempty"`
	ValidFrom   time.Time `json:"valid_from"`
	// ValidUntil, when set, is when the report stops applying; zero means
	// it does not expire.
	ValidUntil time.Time `json:"valid_until,omitzero"`
}

// Validate checks the report's fields; each error names the field.
func (r IndicatorReport) Validate() error {
	if err := r.Indicator.Validate(); err != nil {
		return fmt.Errorf("%w: indicator: %w", ErrInvalidReport, err)
	}
	if err := checkText("source", r.Source, 1, MaxReportSource); err != nil {
		return err
	}
	if r.Confidence < 0 || r.Confidence > 100 {
		return fmt.Errorf("%w: confidence %d out of range 0..100", ErrInvalidReport, r.Confidence)
	}
	if len(r.Labels) > MaxReportLabels {
		return fmt.Errorf("%w: labels: %d of them, limit %d", ErrInvalidReport, len(r.Labels), MaxReportLabels)
	}
	for i, l := range r.Labels {
		if err := checkText(fmt.Sprintf("labels[%d]", i), l, 1, MaxReportLabel); err != nil {
			return err
		}
		if slices.Contains(r.Labels[:i], l) {
			return fmt.Errorf("%w: labels[%d]: %q repeated", ErrInvalidReport, i, l)
		}
	}
	if err := checkText("technique", r.Technique, 0, MaxReportTechnique); err != nil {
		return err
	}
	if len(r.Description) > MaxReportDescription {
		return fmt.Errorf("%w: description is %d bytes, limit %d", ErrInvalidReport, len(r.Description), MaxReportDescription)
	}
	if !utf8.ValidString(r.Description) {
		return fmt.Errorf("%w: description is not valid UTF-8", ErrInvalidReport)
	}
	if r.ValidFrom.IsZero() {
		return fmt.Errorf("%w: valid_from is required", ErrInvalidReport)
	}
	if !r.ValidUntil.IsZero() && !r.ValidUntil.After(r.ValidFrom) {
		return fmt.Errorf("%w: valid_until %s is not after valid_from %s", ErrInvalidReport,
			r.ValidUntil.Format(time.RFC3339), r.ValidFrom.Format(time.RFC3339))
	}
	return nil
}

// ActiveAt reports whether t lies in [ValidFrom, ValidUntil).
func (r IndicatorReport) ActiveAt(t time.Time) bool {
	return !t.Before(r.ValidFrom) && (r.ValidUntil.IsZero() || t.Before(r.ValidUntil))
}

// checkText bounds a one-line field: min to max bytes of valid UTF-8
// without control characters.
func checkText(field, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return fmt.Errorf("%w: %s must be %d to %d bytes, got %d", ErrInvalidReport, field, minLen, maxLen, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidReport, field)
	}
	if i := slices.IndexFunc([]rune(s), unicode.IsControl); i >= 0 {
		return fmt.Errorf("%w: %s has a control character", ErrInvalidReport, field)
	}
	return nil
}

// DecodeIndicatorReport decodes and validates the indicator report an
// envelope carries. Unknown JSON fields are rejected; every error wraps
// ErrMalformed.
func DecodeIndicatorReport(e *Envelope) (IndicatorReport, error) {
	var r IndicatorReport
	if e.Kind != KindIndicator {
		return r, fmt.Errorf("%w: envelope carries a %s, not an indicator report", ErrMalformed, e.Kind)
	}
	if err := decodeStrict(e.Payload, &r); err != nil {
		return r, fmt.Errorf("%w: indicator report payload: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r, nil
}
