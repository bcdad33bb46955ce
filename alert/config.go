package alert

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
)

// Event kinds a rule's `on` may name. Sources of each:
//
//   - policy_committed: the node's policy watch, once per policy; the
//     policy's expiry or revocation resolves it. Key: the policy ID.
//   - node_down: a roster member not heard from (heartbeats) for longer
//     than node_down_after; it resolves when the member is heard again or
//     leaves the roster. Key: the member's node ID.
//   - leaderless: no Raft leader known for longer than leaderless_after;
//     resolves when one is. Key: "raft".
//   - detection: a local detection. Never resolves by itself: such rules
//     need resolve_after. Key: the indicator.
//   - drift, breach: raised by the compliance and process measurement
//     parts through the node's RaiseAlertEvent, resolved the same way
//     (Event.Resolved).
//   - feed_failing: a feed whose polls keep failing; resolved when one
//     succeeds. Key: the feed's name.
//   - metric: not an event; the rule's `metric` condition is evaluated on
//     every Evaluate.
const (
	KindPolicyCommitted = "policy_committed"
	KindNodeDown        = "node_down"
	KindLeaderless      = "leaderless"
	KindDetection       = "detection"
	KindDrift           = "drift"
	KindBreach          = "breach"
	KindFeedFailing     = "feed_failing"
	KindMetric          = "metric"
)

// Kinds lists every value `on` accepts.
var Kinds = []string{KindPolicyCommitted, KindNodeDown, KindLeaderless, KindDetection, KindDrift,
	KindBreach, KindFeedFailing, KindMetric}

// Sink names a rule's `sinks` may list: the outputs of the node's
// `events:` section.
const (
	SinkWebhook   = "webhook"
	SinkSyslog    = "syslog"
	SinkJSONLines = "json_lines"
)

// Group-by fields: what of an event makes its group.
var groupFields = []string{"key", "kind", "node", "site", "indicator", "action"}

// Bounds of the configuration.
const (
	MaxRules       = 256
	maxNameLen     = 64
	maxLabels      = 16
	minEvalEvery   = 100 * time.Millisecond
	DefaultMaxKeys = 1024 // members tracked per group
)

// Config is the `alerts:` section.
type Config struct {
	// Rules are evaluated in order; an event may fire several.
	Rules []Rule `yaml:"rules"`
	// EvalInterval is how often metric conditions, resolve_after,
	// repeat_after, node liveness and leaderlessness are evaluated.
	EvalInterval time.Duration `yaml:"eval_interval"`
	// MaxGroups bounds the (rule, group) states held; past it the group
	// updated longest ago is evicted (counted).
	MaxGroups int `yaml:"max_groups"`
	// MaxRecent is how many resolved alerts the viewer keeps.
	MaxRecent int `yaml:"max_recent"`
	// NodeDownAfter: a roster member not heard from for this long is down.
	NodeDownAfter time.Duration `yaml:"node_down_after"`
	// LeaderlessAfter: no Raft leader for this long raises leaderless.
	LeaderlessAfter time.Duration `yaml:"leaderless_after"`
	// FeedFailures: a feed whose polls failed this many times in a row is
	// failing.
	FeedFailures int `yaml:"feed_failures"`
	// SinkRate bounds the notifications each sink is sent.
	SinkRate RateLimit `yaml:"sink_rate"`
}

// RateLimit is a token bucket: Burst notifications at once, refilled at
// PerMinute.
type RateLimit struct {
	PerMinute int `yaml:"per_minute"`
	Burst     int `yaml:"burst"`
}

// Rule is one alerting rule.
type Rule struct {
	// Name identifies the rule in notifications; unique, [a-z0-9_-].
	Name string `yaml:"name"`
	// On is the event kind the rule watches (Kinds), or "metric".
	On string `yaml:"on"`
	// Metric is the condition of an `on: metric` rule.
	Metric *MetricCondition `yaml:"metric"`
	Filter Filter           `yaml:"filter"`
	// Severity of the alert; empty takes the event's (medium if none).
	Severity intel.Severity `yaml:"severity"`
	// GroupBy names what of an event makes its group (key, kind, node,
	// site, indicator, action); default [key]. One notification per group
	// while it fires.
	GroupBy []string `yaml:"group_by"`
	// RepeatAfter re-notifies a group still firing this long after its
	// last notification; 0: never.
	RepeatAfter time.Duration `yaml:"repeat_after"`
	// ResolveAfter resolves a group that saw no matching event for this
	// long; 0: only a resolving event (or a metric back in range) does.
	ResolveAfter time.Duration `yaml:"resolve_after"`
	// Sinks the rule's notifications go to (webhook, syslog, json_lines);
	// empty: every configured sink.
	Sinks []string `yaml:"sinks"`
}

// Filter narrows the events a rule takes; empty fields match all.
type Filter struct {
	// MinSeverity: events below it (or without one) are ignored.
	MinSeverity intel.Severity `yaml:"min_severity"`
	// Action of a policy_committed event (block, allow, observe).
	Action intel.Action `yaml:"action"`
	// IndicatorType of the event's indicator (ipv4, domain, ...).
	IndicatorType intel.IndicatorType `yaml:"indicator_type"`
	// Site of the event (the member's site for node_down).
	Site string `yaml:"site"`
}

// MetricCondition holds when a series of the node's registry compares
// true for at least For.
type MetricCondition struct {
	// Name of the metric family (meshward_events_dropped_total).
	Name string `yaml:"name"`
	// Labels every series considered must carry, with these values.
	Labels map[string]string `yaml:"labels"`
	// Op is one of > >= < <= == !=.
	Op    string  `yaml:"op"`
	Value float64 `yaml:"value"`
	// For is how long the comparison must hold before the rule fires.
	For time.Duration `yaml:"for"`
}

// DefaultConfig returns the section's defaults: no rules.
func DefaultConfig() Config {
	return Config{EvalInterval: 15 * time.Second, MaxGroups: 10_000, MaxRecent: 500,
		NodeDownAfter: time.Minute, LeaderlessAfter: 30 * time.Second, FeedFailures: 3,
		SinkRate: RateLimit{PerMinute: 60, Burst: 20}}
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	metricRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	ops      = []string{">", ">=", "<", "<=", "==", "!="}
)

// severityRank orders severities; 0 is none or unknown.
func severityRank(s intel.Severity) int {
	switch s {
	case intel.SeverityLow:
		return 1
	case intel.SeverityMedium:
		return 2
	case intel.SeverityHigh:
		return 3
	case intel.SeverityCritical:
		return 4
	}
	return 0
}

func validSeverity(s intel.Severity) bool { return severityRank(s) > 0 }

// Validate checks the section against the sinks the node has configured
// (SinkWebhook, SinkSyslog, SinkJSONLines) and returns every problem,
// joined, each a *confcheck.FieldError whose Field is relative to the
// section ("rules[2].metric.op").
func (c Config) Validate(configured []string) error {
	var p confcheck.Problems
	if c.EvalInterval < minEvalEvery {
		p.Add("eval_interval", c.EvalInterval, "must be at least "+minEvalEvery.String())
	}
	if c.MaxGroups < 1 {
		p.Add("max_groups", c.MaxGroups, "must be at least 1")
	}
	if c.MaxRecent < 0 {
		p.Add("max_recent", c.MaxRecent, "must not be negative")
	}
	if c.NodeDownAfter <= 0 {
		p.Add("node_down_after", c.NodeDownAfter, "must be positive")
	}
	if c.LeaderlessAfter <= 0 {
		p.Add("leaderless_after", c.LeaderlessAfter, "must be positive")
	}
	if c.FeedFailures < 1 {
		p.Add("feed_failures", c.FeedFailures, "must be at least 1")
	}
	if c.SinkRate.PerMinute < 1 {
		p.Add("sink_rate.per_minute", c.SinkRate.PerMinute, "must be at least 1")
	}
	if c.SinkRate.Burst < 1 {
		p.Add("sink_rate.burst", c.SinkRate.Burst, "must be at least 1")
	}
	if len(c.Rules) > MaxRules {
		p.Add("rules", len(c.Rules), fmt.Sprintf("at most %d rules", MaxRules))
	}
	seen := map[string]int{}
	for i, r := range c.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		if !nameRE.MatchString(r.Name) || len(r.Name) > maxNameLen {
			p.Add(f+".name", r.Name, fmt.Sprintf("want 1 to %d of a-z, 0-9, _ and -, starting with a letter or digit", maxNameLen))
		} else if j, dup := seen[r.Name]; dup {
			p.Add(f+".name", r.Name, fmt.Sprintf("already the name of rules[%d]", j))
		} else {
			seen[r.Name] = i
		}
		r.validate(f, configured, &p)
	}
	return p.Err()
}

func (r Rule) validate(f string, configured []string, p *confcheck.Problems) {
	if !slices.Contains(Kinds, r.On) {
		p.Add(f+".on", r.On, "allowed values: policy_committed, node_down, leaderless, detection, drift, breach, feed_failing, metric")
	}
	if r.On == KindMetric {
		if r.Metric == nil {
			p.Add(f+".metric", "none", "required with on: metric")
		} else {
			r.Metric.validate(f+".metric", p)
		}
	} else if r.Metric != nil {
		p.Add(f+".metric", r.Metric.Name, "only with on: metric")
	}
	if r.Severity != "" && !validSeverity(r.Severity) {
		p.Add(f+".severity", r.Severity, "allowed values: low, medium, high, critical")
	}
	fl := r.Filter
	if fl.MinSeverity != "" && !validSeverity(fl.MinSeverity) {
		p.Add(f+".filter.min_severity", fl.MinSeverity, "allowed values: low, medium, high, critical")
	}
	if fl.Action != "" {
		switch {
		case fl.Action != intel.ActionBlock && fl.Action != intel.ActionAllow && fl.Action != intel.ActionObserve:
			p.Add(f+".filter.action", fl.Action, "allowed values: block, allow, observe")
		case r.On != KindPolicyCommitted:
			p.Add(f+".filter.action", fl.Action, "applies to on: policy_committed only")
		}
	}
	if fl.IndicatorType != "" {
		if !knownType(fl.IndicatorType) {
			p.Add(f+".filter.indicator_type", fl.IndicatorType, "allowed values: ipv4, ipv6, cidr, domain, url, sha256, md5, sha1")
		}
	}
	if len(fl.Site) > 256 {
		p.Add(f+".filter.site", len(fl.Site), "at most 256 bytes")
	}
	seen := map[string]bool{}
	for j, g := range r.GroupBy {
		switch {
		case !slices.Contains(groupFields, g):
			p.Add(fmt.Sprintf("%s.group_by[%d]", f, j), g, "allowed values: key, kind, node, site, indicator, action")
		case seen[g]:
			p.Add(fmt.Sprintf("%s.group_by[%d]", f, j), g, "listed twice")
		}
		seen[g] = true
	}
	if r.RepeatAfter < 0 {
		p.Add(f+".repeat_after", r.RepeatAfter, "must not be negative (0: never repeat)")
	} else if r.RepeatAfter > 0 && r.RepeatAfter < time.Minute {
		p.Add(f+".repeat_after", r.RepeatAfter, "at least 1m (or 0: never repeat)")
	}
	if r.ResolveAfter < 0 {
		p.Add(f+".resolve_after", r.ResolveAfter, "must not be negative")
	}
	if r.On == KindDetection && r.ResolveAfter == 0 {
		p.Add(f+".resolve_after", r.ResolveAfter, "required with on: detection (detections never resolve by themselves)")
	}
	seenSink := map[string]bool{}
	for j, s := range r.Sinks {
		sf := fmt.Sprintf("%s.sinks[%d]", f, j)
		switch {
		case s != SinkWebhook && s != SinkSyslog && s != SinkJSONLines:
			p.Add(sf, s, "allowed values: webhook, syslog, json_lines")
		case !slices.Contains(configured, s):
			p.Add(sf, s, "not configured in the events section")
		case seenSink[s]:
			p.Add(sf, s, "listed twice")
		}
		seenSink[s] = true
	}
}

func knownType(t intel.IndicatorType) bool {
	switch t {
	case intel.IPv4, intel.IPv6, intel.CIDR, intel.Domain, intel.URL, intel.SHA256, intel.MD5, intel.SHA1:
		return true
	}
	return false
}

func (m *MetricCondition) validate(f string, p *confcheck.Problems) {
	if !metricRE.MatchString(m.Name) || len(m.Name) > 200 {
		p.Add(f+".name", m.Name, "want a Prometheus metric name")
	}
	if len(m.Labels) > maxLabels {
		p.Add(f+".labels", len(m.Labels), fmt.Sprintf("at most %d labels", maxLabels))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		if !labelRE.MatchString(k) || len(k) > 100 {
			p.Add(f+".labels", k, "want a Prometheus label name")
		}
		if len(m.Labels[k]) > 1024 {
			p.Add(f+".labels."+k, len(m.Labels[k]), "at most 1024 bytes")
		}
	}
	if !slices.Contains(ops, m.Op) {
		p.Add(f+".op", m.Op, "allowed values: >, >=, <, <=, ==, !=")
	}
	if m.Value != m.Value { // NaN
		p.Add(f+".value", m.Value, "must be a number")
	}
	if m.For < 0 {
		p.Add(f+".for", m.For, "must not be negative")
	}
}
