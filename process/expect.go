package process

import (
	"fmt"
	"slices"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

// Config is the process: section of a node's configuration.
type Config struct {
	// Expectations are the playbook's deadlines, evaluated continuously.
	Expectations []Expectation `yaml:"expectations"`
	// EvaluateEvery is how often the node brings its records up to date
	// and evaluates the expectations.
	EvaluateEvery time.Duration `yaml:"evaluate_every"`
}

// DefaultConfig has no expectations and evaluates every 30 seconds.
func DefaultConfig() Config { return Config{EvaluateEvery: 30 * time.Second} }

// MaxExpectations bounds Config.Expectations (each is a metric label).
const MaxExpectations = 64

// Validate checks the section; field paths are relative to it.
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.EvaluateEvery < time.Second {
		p.Add("evaluate_every", c.EvaluateEvery, "must be at least 1s")
	}
	if len(c.Expectations) > MaxExpectations {
		p.Add("expectations", len(c.Expectations), fmt.Sprintf("at most %d", MaxExpectations))
	}
	seen := make(map[string]bool)
	for i, e := range c.Expectations {
		f := fmt.Sprintf("expectations[%d]", i)
		if !validName(e.Name, 64) {
			p.Add(f+".name", e.Name, "want 1 to 64 of a-z, 0-9, '-', '_'")
		} else if seen[e.Name] {
			p.Add(f+".name", e.Name, "used by an earlier expectation")
		}
		seen[e.Name] = true
		if e.Severity != "" && severityRank(e.Severity) == 0 {
			p.Add(f+".severity", e.Severity, "allowed values: low, medium, high, critical (or empty for any)")
		}
		if !slices.Contains(Stages, e.Stage) {
			p.Add(f+".stage", e.Stage, "allowed values: detect, share, decide, enforce, triage, remediate")
		}
		if e.Within <= 0 {
			p.Add(f+".within", e.Within, "must be positive")
		}
		if len(e.Rule) > 128 {
			p.Add(f+".rule", len(e.Rule), "at most 128 bytes")
		}
	}
	return p.Err()
}

// Expectation is one deadline of the playbook: incidents of at least
// Severity (any when empty), of Rule (any when empty), finish Stage
// Within the time after the stage's start.
type Expectation struct {
	Name     string        `yaml:"name" json:"name"`
	Severity string        `yaml:"severity,omitempty" json:"severity,omitempty"`
	Rule     string        `yaml:"rule,omitempty" json:"rule,omitempty"`
	Stage    Stage         `yaml:"stage" json:"stage"`
	Within   time.Duration `yaml:"within" json:"within"`
}

// Applies reports whether the expectation covers the incident.
func (e Expectation) Applies(i Incident) bool {
	if e.Rule != "" && e.Rule != i.Rule {
		return false
	}
	return e.Severity == "" || severityRank(i.Severity) >= severityRank(e.Severity)
}

// Breach is one incident late for one expectation.
type Breach struct {
	Expectation string `json:"expectation"`
	Stage       Stage  `json:"stage"`
	Indicator   string `json:"indicator"`
	Detection   string `json:"detection,omitempty"`
	Site        string `json:"site,omitempty"`
	Rule        string `json:"rule,omitempty"`
	Severity    string `json:"severity,omitempty"`
	// Due is when the stage should have been done by.
	Due time.Time `json:"due"`
	// Done is when it was done; zero while it is still open.
	Done time.Time `json:"done,omitzero"`
	// Late is how late: Done−Due, or now−Due while open.
	Late time.Duration `json:"late_ns"`
	Open bool          `json:"open"`
}

// ID names the breach: one per expectation and indicator.
func (b Breach) ID() string { return b.Expectation + "\x00" + b.Indicator }

// Evaluate returns the breaches of the expectations by the incidents at
// time now, ordered by due time then expectation and indicator.
func Evaluate(incidents []Incident, exps []Expectation, now time.Time) []Breach {
	var out []Breach
	for _, inc := range incidents {
		for _, e := range exps {
			if !e.Applies(inc) {
				continue
			}
			start := inc.Start(e.Stage)
			if start.IsZero() {
				continue
			}
			due := start.Add(e.Within)
			done := inc.Done(e.Stage)
			b := Breach{Expectation: e.Name, Stage: e.Stage, Indicator: inc.Indicator, Detection: inc.Detection,
				Site: inc.Site, Rule: inc.Rule, Severity: inc.Severity, Due: due, Done: done}
			switch {
			case done.IsZero() && now.After(due):
				b.Open, b.Late = true, now.Sub(due)
			case !done.IsZero() && done.After(due):
				b.Late = done.Sub(due)
			default:
				continue
			}
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Breach) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		if c := cmpString(a.Expectation, b.Expectation); c != 0 {
			return c
		}
		return cmpString(a.Indicator, b.Indicator)
	})
	return out
}
