package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/extract"
)

// Bounds of an outside event (POST /v1/process-events).
const (
	MaxEventBytes      = 32 << 10 // the whole JSON body
	MaxEventText       = 16 << 10 // the free text, bytes
	MaxEventIndicators = 64       // listed plus extracted
	MaxEventIDLen      = 128      // external id
	MaxEventNameLen    = 32       // source, kind
	// EventFutureSkew is how far after the node's clock an event's time
	// may lie.
	EventFutureSkew = 5 * time.Minute
	// MaxEventAge is how far before the node's clock an event's time may
	// lie.
	MaxEventAge = 400 * 24 * time.Hour
)

// Why an outside event was refused: the reason label of
// meshward_process_events_rejected_total.
const (
	ReasonTooLarge          = "too_large"
	ReasonMalformed         = "malformed"
	ReasonBadSource         = "bad_source"
	ReasonBadKind           = "bad_kind"
	ReasonBadExternalID     = "bad_external_id"
	ReasonMissingTime       = "missing_time"
	ReasonFutureTime        = "future_time"
	ReasonTooOld            = "too_old"
	ReasonBadText           = "bad_text"
	ReasonBadIndicator      = "bad_indicator"
	ReasonTooManyIndicators = "too_many_indicators"
	ReasonConflict          = "conflict"
)

// RejectReasons are every reason an event may be refused for.
var RejectReasons = []string{ReasonTooLarge, ReasonMalformed, ReasonBadSource, ReasonBadKind,
	ReasonBadExternalID, ReasonMissingTime, ReasonFutureTime, ReasonTooOld, ReasonBadText,
	ReasonBadIndicator, ReasonTooManyIndicators, ReasonConflict}

// ErrRejected is wrapped by every *Rejection.
var ErrRejected = errors.New("process event refused")

// Rejection is why an outside event was refused: a reason (a metric
// label), the field at fault and what was wrong with it.
type Rejection struct {
	Reason string
	Field  string
	Msg    string
}

func (r *Rejection) Error() string {
	if r.Field == "" {
		return fmt.Sprintf("%s (%s): %s", ErrRejected, r.Reason, r.Msg)
	}
	return fmt.Sprintf("%s (%s): %s: %s", ErrRejected, r.Reason, r.Field, r.Msg)
}

func (r *Rejection) Unwrap() error { return ErrRejected }

func reject(reason, field, format string, a ...any) error {
	return &Rejection{Reason: reason, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// ReasonOf returns the reason of a *Rejection in err's chain, or "".
func ReasonOf(err error) string {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// Event is a piece of outside work about indicators: a SIEM alert, a
// SOAR run, a ticket opened or closed, a chat message.
type Event struct {
	// Source is the outside system (siem, soar, ticket, chat, ...):
	// 1 to 32 of a-z, 0-9, '-' and '_'.
	Source string `json:"source"`
	// Kind is what happened (ticket_opened, ticket_closed, message, ...),
	// of the same alphabet. Kinds ending in _closed or _resolved close
	// the linked indicators' incidents (remediation, and triage if not
	// yet triaged); kinds ending in _acknowledged, _assigned or
	// _opened take them up (triage).
	Kind string `json:"kind"`
	// ExternalID is the outside system's ID of the thing (the ticket):
	// 1 to 128 printable bytes. (Source, ExternalID, Kind) is unique: the
	// same event posted again is a duplicate, accepted once.
	ExternalID string `json:"external_id"`
	// Time is when it happened in the outside system.
	Time time.Time `json:"time"`
	// Text is free text, up to MaxEventText bytes of UTF-8; the
	// indicators it names are extracted and linked.
	Text string `json:"text,omitempty"`
	// Indicators are indicators the caller links explicitly.
	Indicators []string `json:"indicators,omitempty"`
}

// Stored is an accepted Event with what the node made of it.
type Stored struct {
	Event
	// Linked are the canonical keys of the indicators linked (listed and
	// extracted), deduplicated and sorted.
	Linked []string `json:"linked"`
	// Received is when the node accepted it.
	Received time.Time `json:"received"`
}

// Key is the event's identity: source, external id and kind.
func (e Event) Key() string { return e.Source + "\x00" + e.ExternalID + "\x00" + e.Kind }

// Triages reports whether the event's kind takes its incidents up.
func (e Event) Triages() bool {
	return hasAnySuffix(e.Kind, "_acknowledged", "_assigned", "_opened") || e.Closes()
}

// Closes reports whether the event's kind closes its incidents.
func (e Event) Closes() bool { return hasAnySuffix(e.Kind, "_closed", "_resolved") }

func hasAnySuffix(s string, suf ...string) bool {
	for _, x := range suf {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

func validName(s string, most int) bool {
	if s == "" || len(s) > most {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ParseEvent decodes and checks an outside event's JSON body against the
// clock now: strictly (unknown fields, trailing data and oversized bodies
// are refused), every field bounded, its time neither far in the future
// nor older than MaxEventAge, its listed indicators valid; the indicators
// its text names are extracted and linked with the listed ones. Every
// error is a *Rejection.
func ParseEvent(body []byte, now time.Time) (Stored, error) {
	if len(body) > MaxEventBytes {
		return Stored{}, reject(ReasonTooLarge, "", "body of %d bytes, limit %d", len(body), MaxEventBytes)
	}
	var e Event
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Stored{}, reject(ReasonMalformed, "", "decode JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Stored{}, reject(ReasonMalformed, "", "trailing data after the JSON object")
	}
	return Check(e, now)
}

// Check checks an event (see ParseEvent) and links its indicators.
func Check(e Event, now time.Time) (Stored, error) {
	switch {
	case !validName(e.Source, MaxEventNameLen):
		return Stored{}, reject(ReasonBadSource, "source", "want 1 to %d of a-z, 0-9, '-', '_', got %q", MaxEventNameLen, clip(e.Source))
	case !validName(e.Kind, MaxEventNameLen):
		return Stored{}, reject(ReasonBadKind, "kind", "want 1 to %d of a-z, 0-9, '-', '_', got %q", MaxEventNameLen, clip(e.Kind))
	case e.ExternalID == "" || len(e.ExternalID) > MaxEventIDLen || !printable(e.ExternalID):
		return Stored{}, reject(ReasonBadExternalID, "external_id", "want 1 to %d printable bytes, got %d bytes", MaxEventIDLen, len(e.ExternalID))
	case e.Time.IsZero():
		return Stored{}, reject(ReasonMissingTime, "time", "required (RFC 3339)")
	case e.Time.After(now.Add(EventFutureSkew)):
		return Stored{}, reject(ReasonFutureTime, "time", "%s is more than %s after this node's clock (%s)",
			e.Time.Format(time.RFC3339), EventFutureSkew, now.UTC().Format(time.RFC3339))
	case e.Time.Before(now.Add(-MaxEventAge)):
		return Stored{}, reject(ReasonTooOld, "time", "%s is more than %s before this node's clock", e.Time.Format(time.RFC3339), MaxEventAge)
	case len(e.Text) > MaxEventText:
		return Stored{}, reject(ReasonBadText, "text", "%d bytes, limit %d", len(e.Text), MaxEventText)
	case !utf8.ValidString(e.Text):
		return Stored{}, reject(ReasonBadText, "text", "not valid UTF-8")
	case len(e.Indicators) > MaxEventIndicators:
		return Stored{}, reject(ReasonTooManyIndicators, "indicators", "%d listed, limit %d", len(e.Indicators), MaxEventIndicators)
	}
	var linked []string
	for i, v := range e.Indicators {
		ind, err := intel.ParseIndicator(v)
		if err != nil {
			return Stored{}, reject(ReasonBadIndicator, fmt.Sprintf("indicators[%d]", i), "%q: %v", clip(v), err)
		}
		linked = append(linked, ind.Key())
	}
	for _, f := range extract.All([]byte(e.Text)) {
		if ind, ok := f.Indicator(); ok {
			linked = append(linked, ind.Key())
		}
	}
	slices.Sort(linked)
	linked = slices.Compact(linked)
	if len(linked) > MaxEventIndicators {
		return Stored{}, reject(ReasonTooManyIndicators, "text", "%d indicators listed and named, limit %d", len(linked), MaxEventIndicators)
	}
	e.Time = e.Time.UTC()
	return Stored{Event: e, Linked: linked, Received: now.UTC()}, nil
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// clip shortens a hostile value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
