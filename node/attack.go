package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel/attack"
	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/internal/confcheck"
)

// IntelConfig is the intel section: reference data the node checks its
// own configuration against.
type IntelConfig struct {
	// AttackPath is the MITRE ATT&CK Enterprise STIX bundle: a file, or a
	// directory holding enterprise-attack.json or
	// enterprise-attack-techniques.json (attack.Load). Empty means off.
	// When set, the technique of every rule in force is checked against
	// it at start and on every reload: an unknown, revoked, deprecated or
	// malformed technique is a warning (logged, and counted in
	// meshward_rules_technique_warnings{reason}), never a failure: the
	// rule stays in force. A bundle that does not load fails the start;
	// on a reload the catalog in force stays and the failure is counted
	// (meshward_attack_load_failures_total).
	AttackPath string `yaml:"attack_path"`
	// KEVPath is CISA's Known Exploited Vulnerabilities catalog (a file,
	// or a directory holding known_exploited_vulnerabilities.json), and
	// NVDPath NVD CVE records (a file, or a directory of .json files):
	// the risk score ranks the CVEs that indicator reports name by them
	// (in KEV raises, known ransomware use raises more, CVSS base). Empty
	// means off; read at start (a reload keeps what was read).
	KEVPath string `yaml:"kev_path"`
	NVDPath string `yaml:"nvd_path"`
	// Feeds are the threat feeds this node fetches (when it is the feed's
	// fetcher) and publishes as indicator reports (node/feeds.go).
	Feeds []feeds.Config `yaml:"feeds"`
}

// DefaultIntelConfig returns the intel section's defaults: no ATT&CK
// bundle.
func DefaultIntelConfig() IntelConfig { return IntelConfig{} }

// Validate checks that a configured bundle path exists.
func (c IntelConfig) Validate() error {
	var p confcheck.Problems
	if c.AttackPath != "" {
		if _, err := os.Stat(c.AttackPath); err != nil {
			msg := "must be an ATT&CK STIX bundle or a directory holding one"
			if errors.Is(err, os.ErrNotExist) {
				msg += ": no such file or directory"
			} else {
				msg += ": " + err.Error()
			}
			p.Add("attack_path", c.AttackPath, msg)
		}
	}
	for _, f := range []struct{ name, path string }{{"kev_path", c.KEVPath}, {"nvd_path", c.NVDPath}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			p.Add(f.name, f.path, "must be a file or a directory: "+err.Error())
		}
	}
	return p.Err()
}

// techniqueReasons are the reasons a rule's technique is warned about, the
// values of the reason label of meshward_rules_technique_warnings.
var techniqueReasons = []string{"unknown", "revoked", "deprecated", "malformed"}

// techniqueReason names the error of attack.Catalog.Check.
func techniqueReason(err error) string {
	switch {
	case errors.Is(err, attack.ErrRevoked):
		return "revoked"
	case errors.Is(err, attack.ErrDeprecated):
		return "deprecated"
	case errors.Is(err, attack.ErrBadID):
		return "malformed"
	}
	return "unknown"
}

// attackState is the ATT&CK catalog in force (nil when intel.attack_path
// is empty) and what it said of the techniques of the rules in force.
type attackState struct {
	mu       sync.Mutex
	catalog  *attack.Catalog
	warnings map[string]int // by reason, from the last check of the rules in force

	loadFailures atomic.Uint64 // bundles that failed to load on a reload
}

// loadCatalog loads the bundle at path and logs what it holds.
func loadCatalog(path string, log *slog.Logger) (*attack.Catalog, error) {
	c, err := attack.Load(path)
	if err != nil {
		return nil, fmt.Errorf("intel.attack_path: %w", err)
	}
	log.Info("ATT&CK catalog loaded", "file", c.Name, "techniques", c.Counts.Techniques,
		"subtechniques", c.Counts.Subtechniques, "tactics", c.Counts.Tactics,
		"revoked", c.Counts.Revoked, "deprecated", c.Counts.Deprecated)
	return c, nil
}

// checkTechniques checks the technique of every rule against c (nil: no
// check) and logs a warning for each that does not name an active
// technique. It returns the warnings by reason.
func checkTechniques(c *attack.Catalog, rules []detectors.Rule, log *slog.Logger) map[string]int {
	out := make(map[string]int)
	if c == nil {
		return out
	}
	for _, r := range rules {
		err := c.Check(r.Technique)
		if err == nil {
			continue
		}
		reason := techniqueReason(err)
		out[reason]++
		log.Warn("rule technique is not an active ATT&CK technique; the rule stays in force",
			"rule", r.Name, "technique", r.Technique, "reason", reason, "err", err)
	}
	return out
}

// set puts a catalog and the warnings of the rules in force in place.
func (a *attackState) set(c *attack.Catalog, warnings map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.catalog, a.warnings = c, warnings
}

// get returns the catalog in force.
func (a *attackState) get() *attack.Catalog {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.catalog
}

// Warnings returns the technique warnings of the rules in force, by
// reason.
func (a *attackState) Warnings() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.warnings))
	for k, v := range a.warnings {
		out[k] = v
	}
	return out
}

var (
	techniqueWarnings = prometheus.NewDesc("meshward_rules_technique_warnings",
		"Rules in force whose technique is not an active ATT&CK technique of intel.attack_path, by reason (unknown, revoked, deprecated, malformed); set at start and on every reload.",
		[]string{"reason"}, nil)
	attackLoadFailures = prometheus.NewDesc("meshward_attack_load_failures_total",
		"ATT&CK bundles (intel.attack_path) that failed to load on a reload (the catalog in force stays).", nil, nil)
)

// attackCollector exposes the technique warnings and load failures.
type attackCollector struct{ a *attackState }

var _ prometheus.Collector = (*attackCollector)(nil)

func (c *attackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- techniqueWarnings
	ch <- attackLoadFailures
}

func (c *attackCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.a.Warnings()
	for _, r := range techniqueReasons {
		ch <- prometheus.MustNewConstMetric(techniqueWarnings, prometheus.GaugeValue, float64(w[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(attackLoadFailures, prometheus.CounterValue, float64(c.a.loadFailures.Load()))
}
