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

// decodeSightingFast decodes b into s, which must be zero, when b is a
// sighting in the form json.Marshal writes it: one object, no white
// space, each known key at most once and spelled as its tag, strings of
// printable ASCII without escapes, integers without fraction or exponent,
// times as RFC 3339 strings (decoded by time.Time's own UnmarshalJSON).
// On such input encoding/json gives the very same Sighting; for anything
// else (other spellings, escapes, white space, unknown or repeated keys,
// nulls, errors of any kind) it returns false, and the caller decodes b
// with encoding/json, which decides. It never accepts what encoding/json
// would refuse: FuzzDecodeSightingFast holds the two to the same result.
func decodeSightingFast(b []byte, s *Sighting) bool {
	p := fastJSON{b: b}
	if !p.next('{') {
		return false
	}
	var seen uint16
	for {
		key, ok := p.str()
		if !ok || !p.next(':') {
			return false
		}
		var bit uint16
		switch key {
		case "indicator":
			bit, ok = 1<<0, p.indicator(&s.Indicator)
		case "detector":
			bit = 1 << 1
			s.Detector, ok = p.str()
		case "technique":
			bit = 1 << 2
			s.Technique, ok = p.str()
		case "severity":
			bit = 1 << 3
			var v string
			v, ok = p.str()
			s.Severity = Severity(v)
		case "confidence":
			bit = 1 << 4
			s.Confidence, ok = p.int()
		case "count":
			bit = 1 << 5
			s.Count, ok = p.int()
		case "first_seen":
			bit, ok = 1<<6, p.time(&s.FirstSeen)
		case "last_seen":
			bit, ok = 1<<7, p.time(&s.LastSeen)
		case "site":
			bit = 1 << 8
			s.Site, ok = p.str()
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if p.next(',') {
			continue
		}
		return p.next('}') && p.i == len(p.b)
	}
}

// fastJSON reads the restricted JSON of decodeSightingFast.
type fastJSON struct {
	b []byte
	i int
}

func (p *fastJSON) next(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// quoted returns the bytes between a pair of quotes, all printable ASCII
// other than a quote or a backslash.
func (p *fastJSON) quoted() ([]byte, bool) {
	if !p.next('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *fastJSON) str() (string, bool) {
	q, ok := p.quoted()
	return string(q), ok
}

// int reads -?(0|[1-9][0-9]*) of at most 18 digits.
func (p *fastJSON) int() (int, bool) {
	neg := p.next('-')
	start := p.i
	v := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + int(p.b[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 18 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

func (p *fastJSON) time(t *time.Time) bool {
	start := p.i
	if _, ok := p.quoted(); !ok {
		return false
	}
	return t.UnmarshalJSON(p.b[start:p.i]) == nil
}

func (p *fastJSON) indicator(ind *Indicator) bool {
	if !p.next('{') {
		return false
	}
	var seen uint8
	for {
		key, ok := p.str()
		if !ok || !p.next(':') {
			return false
		}
		var v string
		if v, ok = p.str(); !ok {
			return false
		}
		switch {
		case key == "type" && seen&1 == 0:
			ind.Type, seen = IndicatorType(v), seen|1
		case key == "value" && seen&2 == 0:
			ind.Value, seen = v, seen|2
		default:
			return false
		}
		if p.next(',') {
			continue
		}
		return p.next('}')
	}
}
