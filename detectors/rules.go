package detectors

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
)

// ErrInvalidRule is wrapped by every rule validation and loading error.
var ErrInvalidRule = errors.New("invalid rule")

// Rule is detection kept as data: which parsed events it counts (Match),
// per what (GroupBy, the source address by default), how (a Threshold of
// events, or of Distinct values, within a sliding Window; or a leaky
// Bucket), how long it keeps quiet about a group after firing (Cooldown),
// and what the resulting sighting says.
type Rule struct {
	Name        string `yaml:"name"`                  // detector name carried by sightings, e.g. "ssh-bruteforce"
	Description string `yaml:"description,omitempty"` // for people
	// Match: every condition must hold for an event to count.
	Match []Condition `yaml:"match"`
	// GroupBy lists the fields whose values make a group; it must include
	// "src" (the reported indicator). Default: [src].
	GroupBy []string `yaml:"group_by,omitempty"`
	// Distinct, when set, counts the distinct values of this field within
	// the window (a port scan counts distinct dst_port) instead of events.
	Distinct  string        `yaml:"distinct,omitempty"`
	Threshold int           `yaml:"threshold,omitempty"` // events (or distinct values) within Window that fire the rule
	Window    time.Duration `yaml:"window,omitempty"`    // sliding window
	// Bucket replaces Threshold and Window with a leaky bucket.
	Bucket *Bucket `yaml:"bucket,omitempty"`
	// Anomaly replaces Threshold and Window with a learnt per-key
	// baseline (anomaly.go).
	Anomaly  *AnomalyRule  `yaml:"anomaly,omitempty"`
	Cooldown time.Duration `yaml:"cooldown"` // quiet time per group after firing; 0 fires on every event past the threshold
	// CVEs are the vulnerabilities the rule sees exploited (an
	// exploit-attempt rule), e.g. ["CVE-2021-44228"]; they weigh in the
	// risk of the indicators it reports (KEV, CVSS).
	CVEs       []string       `yaml:"cves,omitempty"`
	Technique  string         `yaml:"technique"`  // MITRE ATT&CK technique, e.g. "T1110.001"
	Severity   intel.Severity `yaml:"severity"`   // severity carried by sightings
	Confidence int            `yaml:"confidence"` // 0..100, carried by sightings
	// SuppressedBy names rules whose firing makes this one's redundant:
	// when one of them fired for the same group (the same source, and
	// the same group_by fields, which both rules must share) and is
	// still in its cooldown, this rule does not fire; it counts the
	// firing as suppressed and keeps quiet for its own cooldown. The
	// slow brute force rule names the fast one: a guess fast enough for
	// both is one attack, told to the mesh once. A rule of the list
	// that the engine does not run (a subset of the pack) suppresses
	// nothing; one of them that comes after this rule in the pack is
	// seen as it stood before the line both count.
	SuppressedBy []string `yaml:"suppressed_by,omitempty"`
	// Response asks the node for more than a sighting: "quarantine"
	// proposes the mesh-wide quarantine of the detected host, proven by
	// the signed sighting. The mesh accepts it only for a host inside a
	// zone whose auto_quarantine lists the rule (consensus
	// CmdQuarantine), so on an external address it does nothing more.
	// Empty: a sighting only.
	Response string `yaml:"response,omitempty"`
}

// ResponseQuarantine is the Rule.Response that quarantines the detected
// host.
const ResponseQuarantine = "quarantine"

// Bucket is a leaky bucket: every event adds one, LeakRate events leak
// per second, and the rule fires when the level exceeds Capacity.
type Bucket struct {
	Capacity int     `yaml:"capacity"`
	LeakRate float64 `yaml:"leak_rate"` // events per second
}

// Condition tests one field of an event. Exactly one of Equals, In,
// Prefix, Contains, or Min/Max (numeric fields) is set; Not inverts the
// result. Contains matches when the field holds any of the strings,
// whatever their ASCII case (user agents).
// For the address fields (src, dst) Equals and In take addresses or
// prefixes ("203.0.113.0/24").
type Condition struct {
	Field  string   `yaml:"field"`
	Equals *string  `yaml:"equals,omitempty"`
	In     []string `yaml:"in,omitempty"`
	Prefix []string `yaml:"prefix,omitempty"`
	// Contains: any of these, ignoring ASCII case.
	Contains []string `yaml:"contains,omitempty"`
	Min      *int64   `yaml:"min,omitempty"`
	Max      *int64   `yaml:"max,omitempty"`
	Not      bool     `yaml:"not,omitempty"`
}

//go:embed rules/*.yaml
var builtinFS embed.FS

// DefaultSSHRule is the built-in ssh-bruteforce rule: 5 failed logins
// from one address within 60 s.
func DefaultSSHRule() Rule {
	r, ok := BuiltinRules().Get("ssh-bruteforce")
	if !ok {
		panic("detectors: built-in rule pack has no ssh-bruteforce")
	}
	return r
}

// RuleSet is an ordered set of rules with unique names.
type RuleSet struct {
	rules  []Rule
	origin []string // file each rule came from
}

// BuiltinRules returns the rule pack embedded in the binary.
func BuiltinRules() *RuleSet {
	rs := &RuleSet{}
	ents, err := fs.ReadDir(builtinFS, "rules")
	if err != nil {
		panic(fmt.Sprintf("detectors: built-in rules: %v", err))
	}
	for _, de := range ents {
		name := "rules/" + de.Name()
		data, err := builtinFS.ReadFile(name)
		if err == nil {
			err = rs.add("builtin:"+name, data)
		}
		if err != nil {
			panic(fmt.Sprintf("detectors: built-in rules: %v", err))
		}
	}
	if err := rs.checkRefs(); err != nil {
		panic(fmt.Sprintf("detectors: built-in rules: %v", err))
	}
	return rs
}

// LoadRules returns the built-in pack with the rules of dir's *.yaml and
// *.yml files, read in name order, added or replacing built-in rules of
// the same name. An empty dir gives the built-in pack. An error names the
// file, the rule and the field, and wraps ErrInvalidRule when a rule is
// at fault.
func LoadRules(dir string) (*RuleSet, error) {
	rs := BuiltinRules()
	if dir == "" {
		return rs, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("rules dir: %w", err)
	}
	for _, de := range ents {
		n := de.Name()
		if de.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		path := filepath.Join(dir, n)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("rules dir: %w", err)
		}
		if err := rs.add(path, data); err != nil {
			return nil, err
		}
	}
	if err := rs.checkRefs(); err != nil {
		return nil, err
	}
	return rs, nil
}

// checkRefs checks that every rule's suppressed_by names rules of the
// set.
func (rs *RuleSet) checkRefs() error {
	for i, r := range rs.rules {
		for k, n := range r.SuppressedBy {
			if rs.index(n) < 0 {
				return fmt.Errorf("%s: %w %q: field \"suppressed_by[%d]\": no rule %q in the pack", rs.origin[i], ErrInvalidRule, r.Name, k, n)
			}
		}
	}
	return nil
}

// ParseRules decodes one rules file ("rules: [...]") strictly: an unknown
// key is an error. name is used in errors.
func ParseRules(name string, data []byte) ([]Rule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrInvalidRule, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	var file struct {
		Rules []Rule `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("%s: %w", name, describeYAMLError(&doc, data, err))
	}
	for i, r := range file.Rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("%s: rule %d: %w", name, i+1, err)
		}
	}
	return file.Rules, nil
}

// describeYAMLError rewrites a strict decoding error so that it names the
// rule and the field at fault: "rule %q: field %q (line %d): ...". The
// field is the YAML path inside the rule ("match[0].min"), or the key
// itself for an unknown key.
func describeYAMLError(doc *yaml.Node, src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return fmt.Errorf("%w: %w", ErrInvalidRule, err)
	}
	paths := confcheck.Paths(src)
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		line := 0
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if i := strings.IndexByte(rest, ':'); i > 0 {
				line, _ = strconv.Atoi(rest[:i])
				m = strings.TrimSpace(rest[i+1:])
			}
		}
		rule, field := locate(doc, pathAt(paths, line))
		if f, ok := strings.CutPrefix(m, "field "); ok {
			if i := strings.Index(f, " not found"); i > 0 {
				field = f[:i]
				m = "unknown field"
			}
		}
		msgs = append(msgs, fmt.Sprintf("rule %q: field %q (line %d): %s", rule, field, line, m))
	}
	return fmt.Errorf("%w: %s", ErrInvalidRule, strings.Join(msgs, "; "))
}

// pathAt is the YAML path of the key at line, or of the nearest one
// before it (a value spread over several lines).
func pathAt(paths map[int]string, line int) string {
	for l := line; l > 0; l-- {
		if p, ok := paths[l]; ok {
			return p
		}
	}
	return ""
}

// locate splits a path of a rules document ("rules[2].match[0].min") into
// the name of the rule it lies in and the path inside that rule. A path
// outside any rule is returned whole.
func locate(doc *yaml.Node, path string) (rule, field string) {
	rest, ok := strings.CutPrefix(path, "rules[")
	if !ok {
		return "", path
	}
	i := strings.IndexByte(rest, ']')
	n, err := strconv.Atoi(rest[:max(i, 0)])
	if i < 0 || err != nil {
		return "", path
	}
	field = strings.TrimPrefix(rest[i+1:], ".")
	if field == "" {
		field = "rules"
	}
	return ruleName(doc, n), field
}

// ruleName is the name of the n-th rule of a rules document, if it has one.
func ruleName(doc *yaml.Node, n int) string {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rules" {
			continue
		}
		rules := root.Content[i+1]
		if rules.Kind != yaml.SequenceNode || n >= len(rules.Content) || rules.Content[n].Kind != yaml.MappingNode {
			return ""
		}
		r := rules.Content[n]
		for j := 0; j+1 < len(r.Content); j += 2 {
			if r.Content[j].Value == "name" {
				return r.Content[j+1].Value
			}
		}
	}
	return ""
}

// add parses one file into the set, replacing rules of the same name.
func (rs *RuleSet) add(origin string, data []byte) error {
	rules, err := ParseRules(origin, data)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(rules))
	for _, r := range rules {
		if seen[r.Name] {
			return fmt.Errorf("%s: %w: rule %q: field \"name\": defined twice in one file", origin, ErrInvalidRule, r.Name)
		}
		seen[r.Name] = true
		if i := rs.index(r.Name); i >= 0 {
			rs.rules[i], rs.origin[i] = r, origin
			continue
		}
		rs.rules = append(rs.rules, r)
		rs.origin = append(rs.origin, origin)
	}
	return nil
}

func (rs *RuleSet) index(name string) int {
	for i, r := range rs.rules {
		if r.Name == name {
			return i
		}
	}
	return -1
}

// Rules returns a copy of the rules, in order.
func (rs *RuleSet) Rules() []Rule { return slices.Clone(rs.rules) }

// Origin returns the file a rule was loaded from ("builtin:rules/..." for
// the embedded pack).
func (rs *RuleSet) Origin(name string) string {
	if i := rs.index(name); i >= 0 {
		return rs.origin[i]
	}
	return ""
}

// Get returns the rule called name.
func (rs *RuleSet) Get(name string) (Rule, bool) {
	if i := rs.index(name); i >= 0 {
		return rs.rules[i], true
	}
	return Rule{}, false
}

// Select returns the subset of rules with the given names, in the set's
// order. An unknown name is an error.
func (rs *RuleSet) Select(names ...string) (*RuleSet, error) {
	out := &RuleSet{}
	for _, n := range names {
		if rs.index(n) < 0 {
			known := make([]string, len(rs.rules))
			for i, r := range rs.rules {
				known[i] = r.Name
			}
			sort.Strings(known)
			return nil, fmt.Errorf("no rule %q (have %s)", n, strings.Join(known, ", "))
		}
	}
	for i, r := range rs.rules {
		if slices.Contains(names, r.Name) {
			out.rules = append(out.rules, r)
			out.origin = append(out.origin, rs.origin[i])
		}
	}
	return out, nil
}

// NewRuleSet builds a set from rules, validating each.
func NewRuleSet(rules ...Rule) (*RuleSet, error) {
	rs := &RuleSet{}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if rs.index(r.Name) >= 0 {
			return nil, fmt.Errorf("%w %q: name: defined twice", ErrInvalidRule, r.Name)
		}
		rs.rules = append(rs.rules, r)
		rs.origin = append(rs.origin, "")
	}
	return rs, nil
}

// Validate checks the rule's fields; the error names the rule and the
// field at fault.
func (r Rule) Validate() error {
	_, err := compileRule(r)
	return err
}
