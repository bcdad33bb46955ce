package intel

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrInvalidFeedPolicy is wrapped by every feed policy validation error.
var ErrInvalidFeedPolicy = errors.New("invalid feed policy")

// Bounds of a feed policy.
const (
	// MaxFeedPolicies bounds the feed policies a mesh holds.
	MaxFeedPolicies = 64
	// MaxFeedPolicyName bounds a feed policy's name.
	MaxFeedPolicyName = 64
	// MaxFeedPolicyTTL bounds how long a block a feed policy makes lasts.
	MaxFeedPolicyTTL = 30 * 24 * time.Hour
	// MaxFeedPublishers bounds the publishers a feed policy names.
	MaxFeedPublishers = 64
)

// FeedPolicyTypes are the indicator types a feed policy may turn into
// blocks: those every responder can enforce (addresses and ranges in the
// firewall, domains in the DNS sinkhole).
var FeedPolicyTypes = []IndicatorType{IPv4, IPv6, CIDR, Domain}

// FeedPolicy is an operator's decision to turn one feed's indicator
// reports into mesh-wide blocks: the reports of Source, at least
// MinConfidence, of one of Types, signed by one of Publishers (none: any
// voter of the mesh), become blocks lasting at most TTLSeconds (never
// past the report's own validity). It is held in the FSM, set and removed
// by operator-signed commands; a disabled policy promotes nothing.
type FeedPolicy struct {
	Name          string          `json:"name"`
	Source        string          `json:"source"`
	MinConfidence int             `json:"min_confidence"`
	Types         []IndicatorType `json:"types"`
	Action        Action          `json:"action"`
	TTLSeconds    int64           `json:"ttl_seconds"`
	Publishers    []string        `json:"publishers,omitempty"`
	Enabled       bool            `json:"enabled"`
}

// TTL is TTLSeconds as a duration.
func (p FeedPolicy) TTL() time.Duration { return time.Duration(p.TTLSeconds) * time.Second }

// Allows reports whether p promotes indicators of type t.
func (p FeedPolicy) Allows(t IndicatorType) bool { return slices.Contains(p.Types, t) }

// Validate checks the policy's fields; each error names the field.
func (p FeedPolicy) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidFeedPolicy, fmt.Sprintf(format, args...))
	}
	if err := ValidFeedPolicyName(p.Name); err != nil {
		return err
	}
	if err := checkText("source", p.Source, 1, MaxReportSource); err != nil {
		return bad("%v", err)
	}
	if p.MinConfidence < 0 || p.MinConfidence > 100 {
		return bad("min_confidence %d: want 0..100", p.MinConfidence)
	}
	if len(p.Types) == 0 {
		return bad("types: at least one of %v is required", FeedPolicyTypes)
	}
	for i, t := range p.Types {
		if !slices.Contains(FeedPolicyTypes, t) {
			return bad("types[%d] %q: want one of %v (what every responder can enforce)", i, t, FeedPolicyTypes)
		}
		if slices.Contains(p.Types[:i], t) {
			return bad("types[%d] %q repeated", i, t)
		}
	}
	if p.Action != ActionBlock {
		return bad("action %q: a feed policy may only block", p.Action)
	}
	if p.TTLSeconds < 1 || p.TTL() > MaxFeedPolicyTTL {
		return bad("ttl_seconds %d: want 1s..%s", p.TTLSeconds, MaxFeedPolicyTTL)
	}
	if len(p.Publishers) > MaxFeedPublishers {
		return bad("publishers: %d of them, limit %d", len(p.Publishers), MaxFeedPublishers)
	}
	for i, id := range p.Publishers {
		if !validNodeIDText(id) {
			return bad("publishers[%d] %q: want a node ID (base58, 1 to 128 characters)", i, id)
		}
		if slices.Contains(p.Publishers[:i], id) {
			return bad("publishers[%d] %q repeated", i, id)
		}
	}
	return nil
}

// ValidFeedPolicyName checks a feed policy's name: 1 to MaxFeedPolicyName
// bytes of lower-case letters, digits, '.', '_' and '-', starting with a
// letter or a digit.
func ValidFeedPolicyName(name string) error {
	if name == "" || len(name) > MaxFeedPolicyName {
		return fmt.Errorf("%w: name must be 1 to %d bytes, got %d", ErrInvalidFeedPolicy, MaxFeedPolicyName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%w: name %q: character %q at %d (want a-z, 0-9, and '.', '_', '-' after the first)", ErrInvalidFeedPolicy, name, c, i)
		}
	}
	return nil
}

// Reasons a feed policy does not promote a report (FeedPolicy.CheckReport).
const (
	FeedReasonDisabled   = "feed_disabled"
	FeedReasonSource     = "feed_source"
	FeedReasonConfidence = "feed_confidence"
	FeedReasonType       = "feed_type"
	FeedReasonNotValid   = "feed_not_valid"
)

// CheckReport reports why p does not promote r at now, as one of the
// FeedReason names and an error that says what was wrong; "" and nil when
// it does. Who signed the report (a permitted publisher) is the caller's
// check: it depends on the roster.
func (p FeedPolicy) CheckReport(r IndicatorReport, now time.Time) (string, error) {
	switch {
	case !p.Enabled:
		return FeedReasonDisabled, fmt.Errorf("feed policy %s is disabled", p.Name)
	case r.Source != p.Source:
		return FeedReasonSource, fmt.Errorf("report of source %q, feed policy %s takes %q", r.Source, p.Name, p.Source)
	case r.Confidence < p.MinConfidence:
		return FeedReasonConfidence, fmt.Errorf("report of %s has confidence %d, feed policy %s requires %d", r.Indicator, r.Confidence, p.Name, p.MinConfidence)
	case !p.Allows(r.Indicator.Type):
		return FeedReasonType, fmt.Errorf("report of %s is of type %s, feed policy %s takes %v", r.Indicator, r.Indicator.Type, p.Name, p.Types)
	case !r.ActiveAt(now):
		until := "no end"
		if !r.ValidUntil.IsZero() {
			until = r.ValidUntil.Format(time.RFC3339)
		}
		return FeedReasonNotValid, fmt.Errorf("report of %s is valid from %s to %s, not at %s", r.Indicator,
			r.ValidFrom.Format(time.RFC3339), until, now.Format(time.RFC3339))
	}
	return "", nil
}

// FeedBlockTTL is how long a block of r promoted by p at now may last:
// the policy's TTL, cut at the report's end of validity.
func (p FeedPolicy) FeedBlockTTL(r IndicatorReport, now time.Time) time.Duration {
	ttl := p.TTL()
	if !r.ValidUntil.IsZero() {
		if left := r.ValidUntil.Sub(now); left < ttl {
			ttl = left.Truncate(time.Second)
		}
	}
	return ttl
}

// validNodeIDText reports whether id looks like a node ID: 1 to 128
// characters of the base58 alphabet. Whether it names a member is the
// roster's question.
func validNodeIDText(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !strings.ContainsRune(b58alphabet, rune(id[i])) {
			return false
		}
	}
	return true
}
