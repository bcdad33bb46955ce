package detectors

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// cveID is the form of a CVE ID.
var cveID = regexp.MustCompile(`^CVE-\d{4}-\d{4,19}$`)

// cond is a compiled Condition.
type cond struct {
	field    Field
	op       condOp
	strs     []string
	nums     []int64
	prefixes []netip.Prefix
	lo, hi   int64
	not      bool
	// byFirst: contains conditions, the lower-case strings by their first
	// byte, so that the field is scanned once.
	byFirst *[256][]string
}

type condOp uint8

const (
	opIn condOp = iota
	opPrefix
	opRange
	opAddr
	opNum
	opContains
)

// maxSuppressors bounds a rule's suppressed_by.
const maxSuppressors = 8

// compiledRule is a Rule ready to match.
type compiledRule struct {
	Rule
	kinds    uint64 // bit k set: events of Kind k may match
	conds    []cond
	group    []Field // fields besides src that make the group
	distinct Field
	bucket   bool
	anomaly  *compiledAnomaly // nil unless an anomaly rule
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
	case len(r.CVEs) > 16:
		return nil, bad("cves", "%d of them, limit 16", len(r.CVEs))
	case r.Response != "" && r.Response != ResponseQuarantine:
		return nil, bad("response", "%q (want quarantine, or none)", r.Response)
	}
	if len(r.SuppressedBy) > maxSuppressors {
		return nil, bad("suppressed_by", "%d rules, limit %d", len(r.SuppressedBy), maxSuppressors)
	}
	for i, n := range r.SuppressedBy {
		switch {
		case n == "" || len(n) > 128:
			return nil, bad(fmt.Sprintf("suppressed_by[%d]", i), "must be 1 to 128 bytes, got %d", len(n))
		case n == r.Name:
			return nil, bad(fmt.Sprintf("suppressed_by[%d]", i), "a rule cannot suppress itself")
		case r.Anomaly != nil:
			return nil, bad("suppressed_by", "cannot be used with anomaly")
		}
	}
	for i, id := range r.CVEs {
		if !cveID.MatchString(id) {
			return nil, bad(fmt.Sprintf("cves[%d]", i), "%q is not a CVE ID (CVE-YYYY-NNNN)", id)
		}
	}
	switch r.Severity {
	case intel.SeverityLow, intel.SeverityMedium, intel.SeverityHigh, intel.SeverityCritical:
	default:
		return nil, bad("severity", "%q (want low, medium, high or critical)", r.Severity)
	}
	c := &compiledRule{Rule: r, kinds: 1<<numKinds - 2, cooling: int64(r.Cooldown)}
	if r.Anomaly != nil {
		switch {
		case r.Bucket != nil || r.Threshold != 0 || r.Window != 0:
			return nil, bad("anomaly", "set either anomaly, bucket, or threshold and window")
		case r.Distinct != "":
			return nil, bad("distinct", "cannot be used with anomaly")
		case len(r.GroupBy) > 0:
			return nil, bad("group_by", "cannot be used with anomaly: anomaly.key says what has a baseline")
		case r.Cooldown != 0:
			return nil, bad("cooldown", "cannot be used with anomaly: it fires at most once a bucket")
		}
		a, err := compileAnomaly(r.Anomaly, bad)
		if err != nil {
			return nil, err
		}
		c.anomaly = a
	} else if r.Bucket != nil {
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
			var mask uint64
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
	c.kinds &^= 1 << KindLocalAuthFailure // such lines never reach the rules
	if c.kinds == 0 {
		return nil, bad("match", "no event kind can match (local_auth_failure names no remote party: no rule can report it)")
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
	if m.Contains != nil {
		set++
	}
	if m.Min != nil || m.Max != nil {
		set++
	}
	if set != 1 {
		return cond{}, &condError{"field", fmt.Sprintf("%q: set exactly one of equals, in, prefix, contains, or min/max", m.Field)}
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
	case m.Contains != nil:
		if f.typ() != typeString || f == FieldKind {
			return cond{}, &condError{"contains", fmt.Sprintf("field %q is not a string", m.Field)}
		}
		if len(m.Contains) == 0 {
			return cond{}, &condError{"contains", "empty list"}
		}
		for _, v := range m.Contains {
			if v == "" {
				return cond{}, &condError{"contains", "empty string"}
			}
			cd.strs = append(cd.strs, strings.ToLower(v))
		}
		cd.op = opContains
		cd.byFirst = new([256][]string)
		for _, v := range cd.strs {
			cd.byFirst[v[0]] = append(cd.byFirst[v[0]], v)
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
	case opContains:
		ok = containsAnyFold(ev.str(cd.field), cd.byFirst)
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

// containsAnyFold reports whether s contains one of the lower-case
// strings of byFirst (indexed by their first byte), ignoring the ASCII
// case of s, in one pass over s.
func containsAnyFold(s string, byFirst *[256][]string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		for _, v := range byFirst[c] {
			if len(v) <= len(s)-i && hasPrefixFold(s[i:], v) {
				return true
			}
		}
	}
	return false
}

// hasPrefixFold reports whether s starts with p, a lower-case string,
// ignoring the ASCII case of s.
func hasPrefixFold(s, p string) bool {
	for j := 0; j < len(p); j++ {
		c := s[j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != p[j] {
			return false
		}
	}
	return true
}
