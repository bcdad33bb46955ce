package feeds

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/meshward/meshward/intel"
)

// Entry is one indicator of a feed with its provenance.
type Entry struct {
	Indicator intel.Indicator `json:"indicator"`
	// Feed is the name of the feed the entry came from.
	Feed string `json:"feed,omitempty"`
	// FirstSeen and LastSeen are when the feed says the indicator was
	// first and last observed; zero when it does not say.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// ValidFrom and ValidUntil bound when the entry applies; zero when
	// the feed does not say (the publisher then uses the time of
	// publication and its configured TTL).
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// Confidence is 1..100, or 0 when the feed does not say.
	Confidence int `json:"confidence,omitempty"`
	// TLP is the Traffic Light Protocol marking (clear, green, amber,
	// amber+strict, red), "" when unmarked.
	TLP         string   `json:"tlp,omitempty"`
	Labels      []string `json:"labels,omitempty"`
	Technique   string   `json:"technique,omitempty"` // ATT&CK technique ID
	CVEs        []string `json:"cves,omitempty"`
	Description string   `json:"description,omitempty"`
}

// Report turns e into the indicator report a node publishes: source is
// the feed's name, confidence and TTL the feed's defaults where the entry
// says nothing, valid from now. The TLP marking and the CVE references
// travel as labels ("tlp:amber", "cve:CVE-2024-3400"), as the report has
// no fields of its own for them; labels beyond the report's limits are
// dropped.
func (e Entry) Report(source string, confidence int, ttl time.Duration, now time.Time) intel.IndicatorReport {
	r := intel.IndicatorReport{
		Indicator:  e.Indicator,
		Source:     source,
		Confidence: confidence,
		Technique:  e.Technique,
		ValidFrom:  now.UTC().Truncate(time.Second),
	}
	if e.Confidence > 0 {
		r.Confidence = e.Confidence
	}
	if !e.ValidFrom.IsZero() && e.ValidFrom.Before(r.ValidFrom) {
		r.ValidFrom = e.ValidFrom.UTC()
	}
	if ttl > 0 {
		r.ValidUntil = now.UTC().Truncate(time.Second).Add(ttl)
	}
	if !e.ValidUntil.IsZero() && e.ValidUntil.After(r.ValidFrom) && (r.ValidUntil.IsZero() || e.ValidUntil.Before(r.ValidUntil)) {
		r.ValidUntil = e.ValidUntil.UTC()
	}
	if len(e.Description) <= intel.MaxReportDescription {
		r.Description = e.Description
	}
	if len(r.Technique) > intel.MaxReportTechnique {
		r.Technique = ""
	}
	var labels []string
	add := func(l string) {
		if len(labels) < intel.MaxReportLabels && l != "" && len(l) <= intel.MaxReportLabel && !containsStr(labels, l) {
			labels = append(labels, l)
		}
	}
	if e.TLP != "" {
		add("tlp:" + e.TLP)
	}
	for _, c := range e.CVEs {
		add("cve:" + c)
	}
	for _, l := range e.Labels {
		add(l)
	}
	r.Labels = labels
	return r
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TLP markings, TLP 2.0 with the 1.0 "white" read as "clear".
var tlps = map[string]string{"clear": "clear", "white": "clear", "green": "green", "amber": "amber", "amber+strict": "amber+strict", "red": "red"}

// ParseTLP returns the canonical TLP marking of s ("amber", "TLP:AMBER").
func ParseTLP(s string) (string, error) {
	k := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "tlp:")
	if v, ok := tlps[k]; ok {
		return v, nil
	}
	return "", fmt.Errorf("TLP %q: want clear, green, amber, amber+strict or red", s)
}

var (
	techniqueRE = regexp.MustCompile(`\bT[0-9]{4}(\.[0-9]{3})?\b`)
	cveRE       = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,7}$`)
)

// Errors the parsers and the fetcher wrap.
var (
	// ErrFormat: the input is not in the format it claims (broken CSV
	// quoting, a line that is not JSON, a MISP event without uuid).
	ErrFormat = errors.New("malformed feed")
	// ErrInvalidValue: a value is not a valid indicator (strict mode).
	ErrInvalidValue = errors.New("invalid feed value")
	// ErrTooLarge: a line, an event or a body is over its limit.
	ErrTooLarge = errors.New("feed too large")
	// ErrNotSupported: the format is known but cannot be read yet.
	ErrNotSupported = errors.New("feed format not supported yet")
)

// Position is where in a feed something was read: a line of a file, or an
// attribute of a MISP event (Attr is -1 for the event itself).
type Position struct {
	File  string
	Line  int
	Event string
	Attr  int
}

func (p Position) String() string {
	f := p.File
	if f == "" {
		f = "<input>"
	}
	if p.Event != "" {
		if p.Attr >= 0 {
			return fmt.Sprintf("%s: event %s attribute %d", f, p.Event, p.Attr)
		}
		return fmt.Sprintf("%s: event %s", f, p.Event)
	}
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d", f, p.Line)
	}
	return f
}

// Error is a parse error at a position.
type Error struct {
	Pos    Position
	Reason string // a skip reason (see Stats.Skipped) or "format"
	Err    error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Reasons a value is skipped, the keys of Stats.Skipped (besides
// "type:<misp type>" for MISP attributes of a type not read).
const (
	SkipInvalid  = "invalid"   // not a valid indicator
	SkipEmpty    = "empty"     // the chosen column or field is empty or missing
	SkipNotIDS   = "not_ids"   // a MISP attribute with to_ids false
	SkipDeleted  = "deleted"   // a deleted MISP attribute
	SkipTooLong  = "too_long"  // a value over the indicator length limit
	SkipNotValue = "not_value" // a JSON field that is not a string
)

// maxSamples bounds the skip errors Stats keeps as examples.
const maxSamples = 10

// Stats counts what a parse read.
type Stats struct {
	Entries int            `json:"entries"`
	Skipped map[string]int `json:"skipped,omitempty"` // by reason
	// Samples are the first few skips, with their positions.
	Samples []string `json:"samples,omitempty"`
}

// SkippedTotal is the number of skipped values.
func (s *Stats) SkippedTotal() int {
	n := 0
	for _, v := range s.Skipped {
		n += v
	}
	return n
}

func (s *Stats) skip(reason string, err error) {
	if s.Skipped == nil {
		s.Skipped = make(map[string]int)
	}
	s.Skipped[reason]++
	if err != nil && len(s.Samples) < maxSamples {
		s.Samples = append(s.Samples, err.Error())
	}
}

// Reasons returns the skip reasons in order, for stable output.
func (s *Stats) Reasons() []string {
	out := make([]string, 0, len(s.Skipped))
	for k := range s.Skipped {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Options are common to every parser.
type Options struct {
	// File names the input in errors.
	File string
	// Feed is put in every entry's Feed.
	Feed string
	// Strict turns an invalid value into an error instead of a counted
	// skip.
	Strict bool
}

// emitter applies the options and counts.
type emitter struct {
	o     Options
	stats *Stats
	fn    func(Entry) error
}

// bad records an invalid value at pos: an error in strict mode, else a
// counted skip.
func (em *emitter) bad(pos Position, reason string, err error) error {
	e := &Error{Pos: pos, Reason: reason, Err: err}
	if em.o.Strict && reason != SkipNotIDS && reason != SkipDeleted && !strings.HasPrefix(reason, "type:") {
		return e
	}
	em.stats.skip(reason, e)
	return nil
}

// value validates a raw value with ParseIndicator and hands the entry on.
func (em *emitter) value(pos Position, raw string, e Entry) error {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return em.bad(pos, SkipEmpty, fmt.Errorf("%w: empty value", ErrInvalidValue))
	}
	ind, err := intel.ParseIndicator(raw)
	if err == nil && ind.Type == intel.Domain {
		err = feedDomain(ind.Value)
	}
	if err != nil {
		reason := SkipInvalid
		if len(raw) > 2048 {
			reason = SkipTooLong
		}
		return em.bad(pos, reason, fmt.Errorf("%w: %w", ErrInvalidValue, err))
	}
	e.Indicator = ind
	return em.emit(e)
}

func (em *emitter) emit(e Entry) error {
	if e.Feed == "" {
		e.Feed = em.o.Feed
	}
	em.stats.Entries++
	return em.fn(e)
}

// Check runs parse with a callback that only counts: the first,
// validating pass of an all-or-nothing import.
func Check(parse func(fn func(Entry) error) (Stats, error)) (Stats, error) {
	return parse(func(Entry) error { return nil })
}

func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999-0700", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func validUTF8(s string) bool { return utf8.ValidString(s) }

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// feedDomain refuses what ParseIndicator takes for a domain but a feed
// never means as one: a single label ("localhost", a word of a comment)
// or all-numeric labels (a mistyped address such as 203.0.113.300).
func feedDomain(d string) error {
	if !strings.Contains(d, ".") {
		return fmt.Errorf("domain %q has a single label", d)
	}
	tld := d[strings.LastIndexByte(d, '.')+1:]
	if strings.Trim(tld, "0123456789") == "" {
		return fmt.Errorf("%q is neither an IP address nor a domain (numeric top-level label)", d)
	}
	return nil
}
