package detectors

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/intel"
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
	Bucket     *Bucket        `yaml:"bucket,omitempty"`
	Cooldown   time.Duration  `yaml:"cooldown"`   // quiet time per group after firing; 0 fires on every event past the threshold
	Technique  string         `yaml:"technique"`  // MITRE ATT&CK technique, e.g. "T1110.001"
	Severity   intel.Severity `yaml:"severity"`   // severity carried by sightings
	Confidence int            `yaml:"confidence"` // 0..100, carried by sightings
}

// Bucket is a leaky bucket: every event adds one, LeakRate events leak
// per second, and the rule fires when the level exceeds Capacity.
type Bucket struct {
	Capacity int     `yaml:"capacity"`
	LeakRate float64 `yaml:"leak_rate"` // events per second
}

// Condition tests one field of an event. Exactly one of Equals, In,
// Prefix, or Min/Max (numeric fields) is set; Not inverts the result.
// For the address fields (src, dst) Equals and In take addresses or
// prefixes ("203.0.113.0/24").
type Condition struct {
	Field  string   `yaml:"field"`
	Equals *string  `yaml:"equals,omitempty"`
	In     []string `yaml:"in,omitempty"`
	Prefix []string `yaml:"prefix,omitempty"`
	Min    *int64   `yaml:"min,omitempty"`
	Max    *int64   `yaml:"max,omitempty"`
	Not    bool     `yaml:"not,omitempty"`
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
	return rs, nil
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
		return nil, fmt.Errorf("%s: %w", name, describeYAMLError(&doc, err))
	}
	for i, r := range file.Rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("%s: rule %d: %w", name, i+1, err)
		}
	}
	return file.Rules, nil
}

// describeYAMLError rewrites a strict decoding error so that it names the
// rule and the field at fault.
func describeYAMLError(doc *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return fmt.Errorf("%w: %w", ErrInvalidRule, err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		line := 0
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if i := strings.IndexByte(rest, ':'); i > 0 {
				line, _ = strconv.Atoi(rest[:i])
				m = strings.TrimSpace(rest[i+1:])
			}
		}
		rule, field := locate(doc, line)
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

// locate finds the rule (by name) and the key path at line of a rules
// document.
func locate(doc *yaml.Node, line int) (rule, field string) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return "", ""
	}
	var rules *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "rules" {
			rules = root.Content[i+1]
		}
		if root.Content[i].Line == line {
			return "", root.Content[i].Value
		}
	}
	if rules == nil || rules.Kind != yaml.SequenceNode {
		return "", "rules"
	}
	var cur *yaml.Node
	for _, r := range rules.Content {
		if r.Line <= line {
			cur = r
		}
	}
	if cur == nil || cur.Kind != yaml.MappingNode {
		return "", "rules"
	}
	for i := 0; i+1 < len(cur.Content); i += 2 {
		if cur.Content[i].Value == "name" {
			rule = cur.Content[i+1].Value
		}
	}
	return rule, keyAt(cur, line, "")
}

// keyAt returns the dotted path of the deepest key at or before line in n.
func keyAt(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.MappingNode:
		best := ""
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Line > line {
				break
			}
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			best = p
			if sub := keyAt(v, line, p); sub != "" {
				best = sub
			}
		}
		return best
	case yaml.SequenceNode:
		best := ""
		for i, c := range n.Content {
			if c.Line > line {
				break
			}
			best = keyAt(c, line, fmt.Sprintf("%s[%d]", prefix, i))
		}
		return best
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

// cond is a compiled Condition.
type cond struct {
	field    Field
	op       condOp
	strs     []string
	nums     []int64
	prefixes []netip.Prefix
	lo, hi   int64
	not      bool
}

type condOp uint8

const (
	opIn condOp = iota
	opPrefix
	opRange
	opAddr
	opNum
)

// compiledRule is a Rule ready to match.
type compiledRule struct {
	Rule
	kinds    uint32 // bit k set: events of Kind k may match
	conds    []cond
	group    []Field // fields besides src that make the group
	distinct Field
	bucket   bool
	capacity float64
	leak     float64 // per nanosecond
	keep     int     // entries kept per group
	window   int64
	cooling  int64
	// coalesce: the rule counts both "Invalid user" and "Failed ... for
	// invalid user", which one attempt logs twice.
	coalesce bool
}

func compileRule(r Rule) (*compiledRule, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w %q: field %q: %s", ErrInvalidRule, r.Name, field, fmt.Sprintf(format, args...))
	}
	switch {
	case r.Name == "" || len(r.Name) > 128:
		return nil, fmt.Errorf("%w: field \"name\": must be 1 to 128 bytes, got %d", ErrInvalidRule, len(r.Name))
	case len(r.Technique) > 32:
		return nil, bad("technique", "%d bytes, limit 32", len(r.Technique))
	case r.Confidence < 0 || r.Confidence > 100:
		return nil, bad("confidence", "%d out of range 0..100", r.Confidence)
	case r.Cooldown < 0:
		return nil, bad("cooldown", "%s, want zero or a positive duration", r.Cooldown)
	case len(r.Match) == 0:
		return nil, bad("match", "at least one condition is required")
	}
	switch r.Severity {
	case intel.SeverityLow, intel.SeverityMedium, intel.SeverityHigh, intel.SeverityCritical:
	default:
		return nil, bad("severity", "%q (want low, medium, high or critical)", r.Severity)
	}
	c := &compiledRule{Rule: r, kinds: 1<<numKinds - 2, cooling: int64(r.Cooldown)}
	if r.Bucket != nil {
		switch {
		case r.Threshold != 0 || r.Window != 0:
			return nil, bad("bucket", "set either bucket or threshold and window, not both")
		case r.Distinct != "":
			return nil, bad("distinct", "cannot be used with bucket")
		case r.Bucket.Capacity < 1:
			return nil, bad("bucket.capacity", "%d, want at least 1", r.Bucket.Capacity)
		case !(r.Bucket.LeakRate > 0) || r.Bucket.LeakRate > 1e6:
			return nil, bad("bucket.leak_rate", "%v, want events per second above 0", r.Bucket.LeakRate)
		}
		c.bucket = true
		c.capacity = float64(r.Bucket.Capacity)
		c.leak = r.Bucket.LeakRate / 1e9
		c.window = int64(float64(r.Bucket.Capacity+1) / r.Bucket.LeakRate * 1e9) // time to drain
	} else {
		switch {
		case r.Threshold < 1:
			return nil, bad("threshold", "%d, want at least 1", r.Threshold)
		case r.Threshold > 10000:
			return nil, bad("threshold", "%d, limit 10000", r.Threshold)
		case r.Window <= 0:
			return nil, bad("window", "%s, want a positive duration", r.Window)
		case r.Window < time.Millisecond:
			return nil, bad("window", "%s is below a millisecond: write a unit, e.g. 60s", r.Window)
		}
		c.window = int64(r.Window)
		c.keep = max(r.Threshold, maxEventsPerSource)
	}
	if r.Distinct != "" {
		f, ok := fieldByName(r.Distinct)
		if !ok || f == FieldKind {
			return nil, bad("distinct", "unknown field %q (want one of %s)", r.Distinct, fieldList())
		}
		c.distinct = f
	}
	hasSrc := len(r.GroupBy) == 0
	for i, g := range r.GroupBy {
		f, ok := fieldByName(g)
		if !ok {
			return nil, bad(fmt.Sprintf("group_by[%d]", i), "unknown field %q (want one of %s)", g, fieldList())
		}
		if f == FieldSrc {
			hasSrc = true
			continue
		}
		if slices.Contains(c.group, f) {
			return nil, bad(fmt.Sprintf("group_by[%d]", i), "%q listed twice", g)
		}
		c.group = append(c.group, f)
	}
	if !hasSrc {
		return nil, bad("group_by", "must include src, the reported address")
	}
	for i, m := range r.Match {
		cd, err := compileCond(m)
		if err != nil {
			return nil, bad(fmt.Sprintf("match[%d].%s", i, err.field), "%s", err.msg)
		}
		if cd.field == FieldKind {
			var mask uint32
			for _, s := range cd.strs {
				k, _ := kindByName(s)
				mask |= 1 << k
			}
			if cd.not {
				mask = ^mask
			}
			c.kinds &= mask
			continue
		}
		c.conds = append(c.conds, cd)
	}
	if c.kinds == 0 {
		return nil, bad("match", "no event kind can match")
	}
	c.coalesce = c.kinds&(1<<KindSSHInvalidUser) != 0 && c.kinds&(1<<KindSSHFailed) != 0 && c.distinct == FieldNone
	return c, nil
}

type condError struct{ field, msg string }

func compileCond(m Condition) (cond, *condError) {
	f, ok := fieldByName(m.Field)
	if !ok {
		return cond{}, &condError{"field", fmt.Sprintf("unknown field %q (want one of %s)", m.Field, fieldList())}
	}
	cd := cond{field: f, not: m.Not}
	set := 0
	if m.Equals != nil {
		set++
	}
	if m.In != nil {
		set++
	}
	if m.Prefix != nil {
		set++
	}
	if m.Min != nil || m.Max != nil {
		set++
	}
	if set != 1 {
		return cond{}, &condError{"field", fmt.Sprintf("%q: set exactly one of equals, in, prefix, or min/max", m.Field)}
	}
	vals := m.In
	key := "in"
	if m.Equals != nil {
		vals, key = []string{*m.Equals}, "equals"
	}
	switch {
	case m.Min != nil || m.Max != nil:
		if f.typ() != typeNumber {
			return cond{}, &condError{"min", fmt.Sprintf("field %q is not numeric", m.Field)}
		}
		cd.op, cd.lo, cd.hi = opRange, -1<<63, 1<<63-1
		if m.Min != nil {
			cd.lo = *m.Min
		}
		if m.Max != nil {
			cd.hi = *m.Max
		}
		if cd.lo > cd.hi {
			return cond{}, &condError{"min", fmt.Sprintf("%d is above max %d", cd.lo, cd.hi)}
		}
	case m.Prefix != nil:
		if f.typ() != typeString {
			return cond{}, &condError{"prefix", fmt.Sprintf("field %q is not a string (use in with address prefixes, or min/max)", m.Field)}
		}
		if len(m.Prefix) == 0 {
			return cond{}, &condError{"prefix", "empty list"}
		}
		cd.op, cd.strs = opPrefix, m.Prefix
	default:
		if len(vals) == 0 {
			return cond{}, &condError{key, "empty list"}
		}
		switch f.typ() {
		case typeNumber:
			cd.op = opNum
			for _, v := range vals {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return cond{}, &condError{key, fmt.Sprintf("%q is not a number", v)}
				}
				cd.nums = append(cd.nums, n)
			}
		case typeAddr:
			cd.op = opAddr
			for _, v := range vals {
				p, err := netip.ParsePrefix(v)
				if err != nil {
					a, err2 := netip.ParseAddr(v)
					if err2 != nil {
						return cond{}, &condError{key, fmt.Sprintf("%q is neither an address nor a prefix", v)}
					}
					p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				}
				cd.prefixes = append(cd.prefixes, p.Masked())
			}
		default:
			if f == FieldKind {
				for _, v := range vals {
					if _, ok := kindByName(v); !ok {
						return cond{}, &condError{key, fmt.Sprintf("unknown kind %q (want one of %s)", v, kindList())}
					}
				}
			}
			cd.op, cd.strs = opIn, vals
		}
	}
	return cd, nil
}

// match reports whether ev satisfies the condition.
func (cd *cond) match(ev *Event) bool {
	var ok bool
	switch cd.op {
	case opRange:
		n := ev.num(cd.field)
		ok = n >= cd.lo && n <= cd.hi
	case opAddr:
		a := ev.addr(cd.field)
		for _, p := range cd.prefixes {
			if p.Contains(a) {
				ok = true
				break
			}
		}
	case opPrefix:
		s := ev.str(cd.field)
		for _, p := range cd.strs {
			if strings.HasPrefix(s, p) {
				ok = true
				break
			}
		}
	case opNum:
		ok = slices.Contains(cd.nums, ev.num(cd.field))
	case opIn:
		s := ev.str(cd.field)
		for _, v := range cd.strs {
			if s == v {
				ok = true
				break
			}
		}
	}
	return ok != cd.not
}

// matches reports whether ev satisfies every condition of the rule.
func (c *compiledRule) matches(ev *Event) bool {
	if c.kinds&(1<<ev.Kind) == 0 {
		return false
	}
	for i := range c.conds {
		if !c.conds[i].match(ev) {
			return false
		}
	}
	return true
}

func fieldList() string {
	return strings.Join(fieldNames[1:], ", ")
}

func kindList() string {
	return strings.Join(kindNames[1:], ", ")
}
