package detectors

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/meshward/meshward/intel"
)

// DefaultMaxSources bounds the per-rule group state of an engine.
const DefaultMaxSources = 100000

// maxEventsPerSource bounds the events kept for one group; a sighting's
// Count never exceeds max(Threshold, maxEventsPerSource).
const maxEventsPerSource = 64

// EngineOptions tune an Engine. The zero value is usable.
type EngineOptions struct {
	// MaxSources bounds the groups (usually source addresses) each rule
	// tracks at once (default DefaultMaxSources). Beyond it the least
	// recently active group is evicted and counted in Stats.
	MaxSources int
	// Allow lists sources that are never reported (the mesh's own
	// addresses, bastions, scanners the operator runs).
	Allow []netip.Prefix
	// Now is the clock (default time.Now). It supplies the time of lines
	// without a parsable timestamp and the year of classic syslog stamps.
	Now func() time.Time
	// Resolve, when set, also reports the addresses of sources logged by
	// host name (see ResolveOptions). Off by default.
	Resolve *ResolveOptions
	// Partial, when set, also counts the events that made no sighting,
	// for TakePartials (partial.go). Off by default.
	Partial *PartialOptions
}

// EngineStats counts what an engine did with its lines.
type EngineStats struct {
	Lines     uint64 // lines fed
	Matched   uint64 // lines whose event at least one rule counts
	Skipped   uint64 // lines of a known kind that could not be read (malformed)
	Allowed   uint64 // matched lines from an allowed source, not counted
	Coalesced uint64 // "Failed ... for invalid user" lines folded into the "Invalid user" line of the same connection
	Fired     uint64 // sightings emitted
	// Suppressed counts the firings left out because a rule of the
	// firing rule's suppressed_by had fired for the group (Rule.SuppressedBy).
	Suppressed uint64 `json:",omitzero"`
	Evicted    uint64 // groups dropped because MaxSources was reached
	Expired    uint64 // idle groups dropped
	Sources    int    // groups tracked now, all rules
	// NonUTF8 counts matched lines that are not valid UTF-8 (an attacker's
	// user name). They are counted by the rules all the same: skipping
	// them would let an attacker hide by adding one bad byte.
	NonUTF8 uint64
	// Parsed counts lines that gave an event, matched by a rule or not.
	Parsed uint64
	// Ahead counts sightings whose lines were stamped after the engine's
	// clock; they are reported at the clock instead.
	Ahead uint64
	// Local counts failures that name no remote party (sudo, su, a PAM
	// failure without rhost, a host name that is not a remote one such
	// as localhost): nothing can be reported about them.
	Local uint64
	// Resolved counts the address sightings added by resolving host names
	// (EngineOptions.Resolve); ResolveFailed the lookups that failed or
	// timed out; ResolveLimited the names not resolved because of the
	// lookup rate limit.
	Resolved, ResolveFailed, ResolveLimited uint64
	// Partial counts the sub-threshold summaries (PartialOptions).
	Partial PartialStats `json:",omitzero"`
	// Cap is MaxSources, the per-rule bound on Sources.
	Cap   int
	Rules []RuleStats
}

// RuleStats counts what one rule did.
type RuleStats struct {
	Rule    string
	Matched uint64 // events counted
	Fired   uint64
	// Suppressed: firings left out for a rule of its suppressed_by.
	Suppressed uint64 `json:",omitzero"`
	Evicted    uint64
	Expired    uint64
	Sources    int // groups tracked now
}

// Engine applies a set of rules to a stream of lines. It is safe for
// concurrent use, though one goroutine usually feeds it.
type Engine struct {
	rules  []*ruleState
	byKind [numKinds][]*ruleState
	allow  []netip.Prefix
	now    func() time.Time
	max    int
	seed   maphash.Seed
	res    *resolver // nil: host names are not resolved
	// partial is nil unless sub-threshold summaries are on (partial.go).
	partial *partialState

	mu        sync.Mutex
	stats     EngineStats
	stampBuf  [40]byte // the last stamp parsed, and its time
	stampLen  int
	stampKind stampKind
	stampTime int64
}

// ruleState is one rule and its groups.
type ruleState struct {
	*compiledRule
	groups  map[groupKey]*group
	lru     group // sentinel: lru.next is the most recently active
	free    *group
	matched uint64
	fired   uint64
	// suppressors are the engine's rules of suppressed_by.
	suppressors []*ruleState
	suppressed  uint64
	evicted     uint64
	expired     uint64
	partial     bool // its sub-threshold counts are summarised (partial.go)
	// anom holds an anomaly rule's keys (anomaly.go); nil for the others.
	anom *anomState
}

// groupKey identifies a group: the source address and a hash of the
// rule's other group_by fields.
type groupKey struct {
	addr netip.Addr
	h    uint64
}

// group is what a rule remembers about one group.
type group struct {
	key        groupKey
	ents       []entry // window rules: events (or distinct values), oldest first
	last       int64   // newest event time, unix ns
	quietUntil int64   // cooldown end, unix ns
	level      float64 // bucket rules: current level
	count      int     // bucket rules: events since the bucket was last empty
	first      int64   // bucket rules: time of the first of those events
	// invalidPort is the port of the last "Invalid user" line not yet
	// followed by its "Failed ... for invalid user" line.
	invalidPort    uint16
	invalidPending bool
	// pending counts the events not yet summarised nor reported by a
	// sighting, between pendFirst and pendLast (partial.go).
	pending             int
	pendFirst, pendLast int64
	prev, next          *group
}

type entry struct {
	t int64  // unix ns
	h uint64 // distinct value's hash
}

// NewEngine validates rule and returns an engine that applies it alone.
func NewEngine(rule Rule, opts EngineOptions) (*Engine, error) {
	rs, err := NewRuleSet(rule)
	if err != nil {
		return nil, err
	}
	return NewRulesEngine(rs, opts)
}

// NewRulesEngine returns an engine that applies every rule of rs.
func NewRulesEngine(rs *RuleSet, opts EngineOptions) (*Engine, error) {
	if opts.MaxSources < 0 {
		return nil, fmt.Errorf("engine options: max_sources %d, want zero (default) or positive", opts.MaxSources)
	}
	e := &Engine{now: opts.Now, max: opts.MaxSources, seed: maphash.MakeSeed()}
	for i, p := range opts.Allow {
		if !p.IsValid() {
			return nil, fmt.Errorf("engine options: allow[%d] is not a valid prefix", i)
		}
		e.allow = append(e.allow, p.Masked())
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.max == 0 {
		e.max = DefaultMaxSources
	}
	if opts.Resolve != nil {
		r, err := newResolver(*opts.Resolve)
		if err != nil {
			return nil, err
		}
		e.res = r
	}
	for _, r := range rs.rules {
		c, err := compileRule(r)
		if err != nil {
			return nil, err
		}
		st := &ruleState{compiledRule: c, groups: make(map[groupKey]*group)}
		st.lru.next, st.lru.prev = &st.lru, &st.lru
		if c.anomaly != nil {
			st.anom = newAnomState()
		}
		e.rules = append(e.rules, st)
		for k := Kind(1); k < numKinds; k++ {
			if c.kinds&(1<<k) != 0 {
				e.byKind[k] = append(e.byKind[k], st)
			}
		}
	}
	if err := e.linkSuppressors(); err != nil {
		return nil, err
	}
	if err := e.setupPartials(opts.Partial); err != nil {
		return nil, err
	}
	e.stats.Cap = e.max
	return e, nil
}

// linkSuppressors points every rule at the rules of its suppressed_by
// that the engine runs. Both must count the same groups: a rule that
// groups by other fields, or an anomaly rule, cannot suppress.
func (e *Engine) linkSuppressors() error {
	for _, r := range e.rules {
		for _, n := range r.SuppressedBy {
			i := slices.IndexFunc(e.rules, func(s *ruleState) bool { return s.Name == n })
			if i < 0 {
				continue
			}
			s := e.rules[i]
			if s.anom != nil || !slices.Equal(s.group, r.group) {
				return fmt.Errorf("%w %q: field \"suppressed_by\": rule %q does not group as this one does (both must have the same group_by)", ErrInvalidRule, r.Name, n)
			}
			r.suppressors = append(r.suppressors, s)
		}
	}
	return nil
}

// suppressedAt reports whether a suppressor of r fired for the group
// key at or before t and is still in its cooldown.
func suppressedAt(r *ruleState, key groupKey, t int64) bool {
	for _, s := range r.suppressors {
		if g := s.groups[key]; g != nil && g.quietUntil > t && g.quietUntil-s.cooling <= t {
			return true
		}
	}
	return false
}

// Rules returns the engine's rules.
func (e *Engine) Rules() []Rule {
	out := make([]Rule, len(e.rules))
	for i, r := range e.rules {
		out[i] = r.Rule
	}
	return out
}

// Feed gives the engine one log line. It returns the first sighting the
// line caused, if any; use Process to receive every one.
func (e *Engine) Feed(line string) (intel.Sighting, bool) {
	var first intel.Sighting
	var ok bool
	e.processResolving(line, func(s intel.Sighting) {
		if !ok {
			first, ok = s, true
		}
	})
	return first, ok
}

// Process gives the engine one log line and calls emit, before it
// returns, for every sighting the line causes. It does not keep line and
// does not allocate unless a rule fires.
func (e *Engine) Process(line []byte, emit func(intel.Sighting)) {
	e.processResolving(unsafe.String(unsafe.SliceData(line), len(line)), emit)
}

// processResolving is process, then, when host names are resolved, the
// address sightings of the line's domain sightings, looked up outside
// the lock.
func (e *Engine) processResolving(line string, emit func(intel.Sighting)) {
	if e.res == nil {
		e.process(line, emit)
		return
	}
	var domains []intel.Sighting
	e.process(line, func(s intel.Sighting) {
		emit(s)
		if s.Indicator.Type == intel.Domain {
			domains = append(domains, s)
		}
	})
	for _, s := range domains {
		e.res.expand(s, e.allowed, emit)
	}
}

func (e *Engine) process(line string, emit func(intel.Sighting)) {
	var ev Event
	res := parseLine(line, &ev)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Lines++
	switch res {
	case resIgnored:
		return
	case resMalformed:
		e.stats.Skipped++
		return
	case resLocal:
		e.stats.Local++
		return
	}
	e.stats.Parsed++
	var t int64
	matched := false
	for _, r := range e.byKind[ev.Kind] {
		if !r.matches(&ev) {
			continue
		}
		if !matched {
			matched = true
			e.stats.Matched++
			if e.allowed(ev.Src) {
				e.stats.Allowed++
				return
			}
			if !utf8.ValidString(line) {
				e.stats.NonUTF8++
			}
			t = e.eventTime(&ev)
		}
		r.matched++
		if r.anom != nil {
			if ev.Host == "" { // a baseline's sightings name addresses
				e.recordAnomaly(r, &ev, t, emit)
			}
			continue
		}
		if s, ok := e.record(r, &ev, t); ok {
			emit(s)
		}
	}
}

func (e *Engine) allowed(a netip.Addr) bool {
	for _, p := range e.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// eventTime returns the time of ev (unix ns): its stamp, or now. The last
// stamp parsed is cached, since consecutive lines mostly share it.
func (e *Engine) eventTime(ev *Event) int64 {
	if ev.Stamp == "" || len(ev.Stamp) > len(e.stampBuf) {
		if ev.Stamp == "" {
			return e.now().UnixNano()
		}
	} else if e.stampLen == len(ev.Stamp) && e.stampKind == ev.stampKind && string(e.stampBuf[:e.stampLen]) == ev.Stamp {
		return e.stampTime
	}
	t, ok := parseStampKind(ev.stampKind, ev.Stamp, e.now())
	if !ok {
		return e.now().UnixNano()
	}
	ns := t.UnixNano()
	if len(ev.Stamp) <= len(e.stampBuf) {
		e.stampLen = copy(e.stampBuf[:], ev.Stamp)
		e.stampKind, e.stampTime = ev.stampKind, ns
	}
	return ns
}

// hashStr hashes a string field value; numbers and addresses hash by value.
func (e *Engine) hashField(ev *Event, f Field) uint64 {
	switch f.typ() {
	case typeNumber:
		return uint64(ev.num(f)) | 1<<63
	case typeAddr:
		b := ev.addr(f).As16()
		return maphash.Bytes(e.seed, b[:])
	}
	return maphash.String(e.seed, ev.str(f))
}

// hashHost hashes a host name without regard to case.
func (e *Engine) hashHost(s string) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h.WriteByte(c)
	}
	return h.Sum64() | 1
}

// record counts ev at time t (unix ns) for rule r.
func (e *Engine) record(r *ruleState, ev *Event, t int64) (intel.Sighting, bool) {
	key := groupKey{addr: ev.Src}
	if ev.Host != "" {
		key.h = e.hashHost(ev.Host)
	}
	for _, f := range r.group {
		key.h = key.h*31 + e.hashField(ev, f)
	}
	e.expireIdle(r, t)
	g := r.groups[key]
	if g == nil {
		g = e.newGroup(r, key)
	} else {
		unlink(g)
	}
	pushFront(&r.lru, g)

	if r.coalesce {
		// One invalid-user connection logs "Invalid user" and then
		// "Failed password for invalid user" for its first attempt:
		// count it once.
		switch {
		case ev.Kind == KindSSHInvalidUser:
			g.invalidPort, g.invalidPending = ev.Port, true
		case ev.Kind == KindSSHFailed && ev.invalid:
			if g.invalidPending && g.invalidPort == ev.Port {
				g.invalidPending = false
				e.stats.Coalesced++
				return intel.Sighting{}, false
			}
		}
	}

	// Events of one group are kept in order; a line stamped earlier than
	// the newest (clock steps, merged files) counts at the newest time.
	if t < g.last {
		t = g.last
	}
	g.last = t
	if r.partial && t >= g.quietUntil && ev.Host == "" {
		e.notePartial(g, t)
	}

	var count int
	var first int64
	if r.bucket {
		if g.count > 0 {
			g.level -= float64(t-g.ents[0].t) * r.leak
			if g.level <= 0 {
				g.level, g.count = 0, 0
			}
		}
		if g.count == 0 {
			g.first = t
		}
		g.level++
		g.count++
		g.ents = append(g.ents[:0], entry{t: t}) // time of the last leak
		if g.level <= r.capacity {
			return intel.Sighting{}, false
		}
		count, first = g.count, g.first
	} else {
		cut := t - r.window
		k := 0
		for k < len(g.ents) && g.ents[k].t < cut {
			k++
		}
		if k > 0 {
			g.ents = g.ents[:copy(g.ents, g.ents[k:])]
		}
		var h uint64
		if r.distinct != FieldNone {
			h = e.hashField(ev, r.distinct)
			for i := range g.ents {
				if g.ents[i].h == h { // seen in the window: refresh it
					g.ents = append(g.ents[:i], g.ents[i+1:]...)
					break
				}
			}
		}
		if len(g.ents) == r.keep {
			g.ents = g.ents[:copy(g.ents, g.ents[1:])]
		}
		g.ents = append(g.ents, entry{t: t, h: h})
		if len(g.ents) < r.Threshold {
			return intel.Sighting{}, false
		}
		count, first = len(g.ents), g.ents[0].t
	}
	if t < g.quietUntil {
		return intel.Sighting{}, false
	}
	g.quietUntil = t + r.cooling
	g.pending = 0 // the sighting reports them
	if len(r.suppressors) > 0 && suppressedAt(r, key, t) {
		// The suppressor's sighting reports the attack.
		e.stats.Suppressed++
		r.suppressed++
		return intel.Sighting{}, false
	}
	e.stats.Fired++
	r.fired++
	// A log stamped ahead of the engine's clock (a sender's clock or zone
	// off) is reported at the clock: the mesh refuses a sighting seen after
	// the envelope that carries it (intel.CheckSightingAt).
	if now := e.now().UnixNano(); t > now {
		e.stats.Ahead++
		t, first = now, min(first, now)
	}
	ind := intel.IndicatorFromAddr(ev.Src)
	if ev.Host != "" {
		var err error
		// The name points into the line: the sighting keeps a copy.
		if ind, err = intel.NewIndicator(intel.Domain, strings.Clone(ev.Host)); err != nil {
			e.stats.Skipped++ // the parsers pass only names that are valid domains
			return intel.Sighting{}, false
		}
	}
	return intel.Sighting{
		Indicator:  ind,
		Detector:   r.Name,
		Technique:  r.Technique,
		Severity:   r.Severity,
		Confidence: r.Confidence,
		Count:      count,
		FirstSeen:  time.Unix(0, first).UTC(),
		LastSeen:   time.Unix(0, t).UTC(),
	}, true
}

// newGroup adds a group for key, evicting the least recently active one
// when the rule is at its cap; the evicted group's memory is reused.
func (e *Engine) newGroup(r *ruleState, key groupKey) *group {
	var g *group
	if len(r.groups) >= e.max {
		old := r.lru.prev
		e.lostPartial(old)
		r.remove(old)
		e.stats.Evicted++
		r.evicted++
		g = old
	} else if r.free != nil {
		g, r.free = r.free, r.free.next
	}
	if g == nil {
		g = &group{ents: make([]entry, 0, 4)}
	} else {
		*g = group{ents: g.ents[:0]}
	}
	g.key = key
	r.groups[key] = g
	return g
}

// expireIdle drops up to two least recently active groups that have no
// event in the window and no cooldown left at time t, so that memory
// follows the attack rather than its history. Their memory is kept on a
// free list of at most one entry per expiry, reused by newGroup.
func (e *Engine) expireIdle(r *ruleState, t int64) {
	for range 2 {
		g := r.lru.prev
		if g == &r.lru || g.last >= t-r.window || g.quietUntil > t {
			return
		}
		e.lostPartial(g)
		r.remove(g)
		e.stats.Expired++
		r.expired++
		if r.free == nil {
			g.next, r.free = nil, g
		}
	}
}

func (r *ruleState) remove(g *group) {
	unlink(g)
	delete(r.groups, g.key)
}

func unlink(g *group) {
	g.prev.next, g.next.prev = g.next, g.prev
	g.prev, g.next = nil, nil
}

func pushFront(head, g *group) {
	g.prev, g.next = head, head.next
	head.next.prev = g
	head.next = g
}

// Stats returns the engine's counters.
func (e *Engine) Stats() EngineStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stats
	if e.res != nil {
		e.res.stats(&st)
	}
	st.Rules = make([]RuleStats, len(e.rules))
	for i, r := range e.rules {
		n := len(r.groups)
		if r.anom != nil {
			n = len(r.anom.keys)
		}
		st.Rules[i] = RuleStats{Rule: r.Name, Matched: r.matched, Fired: r.fired, Suppressed: r.suppressed, Evicted: r.evicted, Expired: r.expired, Sources: n}
		st.Sources += n
	}
	return st
}
