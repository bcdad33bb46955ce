package detectors

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/meshward/meshward/intel"
)

// ErrInvalidRule is wrapped by every rule validation error.
var ErrInvalidRule = errors.New("invalid rule")

// Rule is a sliding-window threshold: when one source address produces
// Threshold matching events within Window, the engine reports it, then
// keeps quiet about that address for Cooldown.
type Rule struct {
	Name       string         // detector name carried by sightings, e.g. "ssh-bruteforce"
	Technique  string         // MITRE ATT&CK technique, e.g. "T1110.001"
	Severity   intel.Severity // severity carried by sightings
	Confidence int            // 0..100, carried by sightings
	Threshold  int            // events within Window that fire the rule; at least 1
	Window     time.Duration  // sliding window; positive
	Cooldown   time.Duration  // quiet time per source after firing; 0 fires on every event past the threshold
}

// DefaultSSHRule is the OpenSSH brute-force rule: 5 failed logins from one
// address within 60 s.
func DefaultSSHRule() Rule {
	return Rule{
		Name:       "ssh-bruteforce",
		Technique:  "T1110.001",
		Severity:   intel.SeverityHigh,
		Confidence: 80,
		Threshold:  5,
		Window:     60 * time.Second,
		Cooldown:   60 * time.Second,
	}
}

// Validate checks the rule's fields; the error names the field at fault.
func (r Rule) Validate() error {
	switch {
	case r.Name == "" || len(r.Name) > 128:
		return fmt.Errorf("%w: name must be 1 to 128 bytes, got %d", ErrInvalidRule, len(r.Name))
	case len(r.Technique) > 32:
		return fmt.Errorf("%w %q: technique is %d bytes, limit 32", ErrInvalidRule, r.Name, len(r.Technique))
	case r.Confidence < 0 || r.Confidence > 100:
		return fmt.Errorf("%w %q: confidence %d out of range 0..100", ErrInvalidRule, r.Name, r.Confidence)
	case r.Threshold < 1:
		return fmt.Errorf("%w %q: threshold %d, want at least 1", ErrInvalidRule, r.Name, r.Threshold)
	case r.Window <= 0:
		return fmt.Errorf("%w %q: window %s, want a positive duration", ErrInvalidRule, r.Name, r.Window)
	case r.Cooldown < 0:
		return fmt.Errorf("%w %q: cooldown %s, want zero or a positive duration", ErrInvalidRule, r.Name, r.Cooldown)
	}
	switch r.Severity {
	case intel.SeverityLow, intel.SeverityMedium, intel.SeverityHigh, intel.SeverityCritical:
	default:
		return fmt.Errorf("%w %q: severity %q (want low, medium, high or critical)", ErrInvalidRule, r.Name, r.Severity)
	}
	return nil
}

// DefaultMaxSources bounds the per-source state of an engine.
const DefaultMaxSources = 100000

// maxEventsPerSource bounds the event times kept for one source; a
// sighting's Count never exceeds max(Threshold, maxEventsPerSource).
const maxEventsPerSource = 64

// EngineOptions tune an Engine. The zero value is usable.
type EngineOptions struct {
	// MaxSources bounds the addresses tracked at once (default
	// DefaultMaxSources). Beyond it the least recently active address is
	// evicted and counted in EngineStats.Evicted.
	MaxSources int
	// Allow lists sources that are never reported (the mesh's own
	// addresses, bastions, scanners the operator runs).
	Allow []netip.Prefix
	// Now is the clock (default time.Now). It supplies the time of lines
	// without a parsable timestamp and the year of classic syslog stamps.
	Now func() time.Time
}

// EngineStats counts what an engine did with its lines.
type EngineStats struct {
	Lines     uint64 // lines fed
	Matched   uint64 // lines recognised as failures with a readable source
	Skipped   uint64 // failure lines that could not be read (malformed)
	Allowed   uint64 // matched lines from an allowed source, not counted
	Coalesced uint64 // "Failed ... for invalid user" lines folded into the "Invalid user" line of the same connection
	Fired     uint64 // sightings emitted
	Evicted   uint64 // sources dropped because MaxSources was reached
	Expired   uint64 // idle sources dropped
	Sources   int    // sources tracked now
}

// Engine applies one rule to a stream of lines. It is safe for concurrent
// use, though one goroutine usually feeds it.
type Engine struct {
	rule    Rule
	allow   []netip.Prefix
	now     func() time.Time
	max     int
	keep    int
	window  int64
	cooling int64

	mu      sync.Mutex
	sources map[netip.Addr]*sourceState
	lru     sourceState // sentinel: lru.next is the most recently active
	stats   EngineStats
}

// sourceState is what the engine remembers about one address.
type sourceState struct {
	addr       netip.Addr
	times      []int64 // event times, unix ns, oldest first, within the window
	last       int64   // newest event time
	quietUntil int64   // cooldown end, unix ns
	// invalidPort is the port of the last "Invalid user" line not yet
	// followed by its "Failed ... for invalid user" line.
	invalidPort    uint16
	invalidPending bool
	prev, next     *sourceState
}

// NewEngine validates rule and returns an engine for OpenSSH auth logs.
func NewEngine(rule Rule, opts EngineOptions) (*Engine, error) {
	if err := rule.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxSources < 0 {
		return nil, fmt.Errorf("engine options: max_sources %d, want zero (default) or positive", opts.MaxSources)
	}
	e := &Engine{
		rule:    rule,
		now:     opts.Now,
		max:     opts.MaxSources,
		keep:    max(rule.Threshold, maxEventsPerSource),
		window:  int64(rule.Window),
		cooling: int64(rule.Cooldown),
		sources: make(map[netip.Addr]*sourceState),
	}
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
	e.lru.next, e.lru.prev = &e.lru, &e.lru
	return e, nil
}

// Rule returns the engine's rule.
func (e *Engine) Rule() Rule { return e.rule }

// Feed gives the engine one log line. It returns a sighting when the
// line's source crosses the rule's threshold and is not cooling down.
func (e *Engine) Feed(line string) (intel.Sighting, bool) {
	ev, res := parseSSH(line)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Lines++
	switch res {
	case resIgnored:
		return intel.Sighting{}, false
	case resMalformed:
		e.stats.Skipped++
		return intel.Sighting{}, false
	}
	e.stats.Matched++
	if e.allowed(ev.addr) {
		e.stats.Allowed++
		return intel.Sighting{}, false
	}
	now := e.now()
	t, ok := parseStamp(ev.stamp, now)
	if !ok {
		t = now
	}
	return e.record(ev, t.UnixNano())
}

func (e *Engine) allowed(a netip.Addr) bool {
	for _, p := range e.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// record counts one event at time t (unix ns) for ev.addr.
func (e *Engine) record(ev event, t int64) (intel.Sighting, bool) {
	e.expireIdle(t)
	s := e.sources[ev.addr]
	if s == nil {
		if len(e.sources) >= e.max {
			e.remove(e.lru.prev)
			e.stats.Evicted++
		}
		s = &sourceState{addr: ev.addr}
		e.sources[ev.addr] = s
	} else {
		e.unlink(s)
	}
	e.pushFront(s)

	// One invalid-user connection logs "Invalid user" and then "Failed
	// password for invalid user" for its first attempt: count it once.
	switch ev.kind {
	case kindInvalidUser:
		s.invalidPort, s.invalidPending = ev.port, true
	case kindFailedInvalid:
		if s.invalidPending && s.invalidPort == ev.port {
			s.invalidPending = false
			e.stats.Coalesced++
			return intel.Sighting{}, false
		}
	}

	// Events of one source are kept in order; a line stamped earlier than
	// the newest (clock steps, merged files) counts at the newest time.
	if t < s.last {
		t = s.last
	}
	s.last = t
	cut := t - e.window
	k := 0
	for k < len(s.times) && s.times[k] < cut {
		k++
	}
	if k == 0 && len(s.times) == e.keep {
		k = 1
	}
	if k > 0 {
		s.times = s.times[:copy(s.times, s.times[k:])]
	}
	s.times = append(s.times, t)

	if len(s.times) < e.rule.Threshold || t < s.quietUntil {
		return intel.Sighting{}, false
	}
	s.quietUntil = t + e.cooling
	e.stats.Fired++
	return intel.Sighting{
		Indicator:  intel.IndicatorFromAddr(ev.addr),
		Detector:   e.rule.Name,
		Technique:  e.rule.Technique,
		Severity:   e.rule.Severity,
		Confidence: e.rule.Confidence,
		Count:      len(s.times),
		FirstSeen:  time.Unix(0, s.times[0]).UTC(),
		LastSeen:   time.Unix(0, t).UTC(),
	}, true
}

// expireIdle drops up to two least recently active sources that have no
// event in the window and no cooldown left at time t, so that memory
// follows the attack rather than its history.
func (e *Engine) expireIdle(t int64) {
	for range 2 {
		s := e.lru.prev
		if s == &e.lru || s.last >= t-e.window || s.quietUntil > t {
			return
		}
		e.remove(s)
		e.stats.Expired++
	}
}

func (e *Engine) remove(s *sourceState) {
	e.unlink(s)
	delete(e.sources, s.addr)
}

func (e *Engine) unlink(s *sourceState) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
}

func (e *Engine) pushFront(s *sourceState) {
	s.prev, s.next = &e.lru, e.lru.next
	e.lru.next.prev = s
	e.lru.next = s
}

// Stats returns the engine's counters.
func (e *Engine) Stats() EngineStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stats
	st.Sources = len(e.sources)
	return st
}

// lineBuffer is the queue between a source and the engine in Run.
const lineBuffer = 256

// Run feeds the lines of src to eng and calls emit, from Run's goroutine,
// for every sighting. It returns nil when ctx ends or src stops cleanly,
// and src's error when it fails; it waits for src to return either way.
func Run(ctx context.Context, src Source, eng *Engine, emit func(intel.Sighting)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan string, lineBuffer)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, lines) }()
	feed := func(l string) {
		if s, ok := eng.Feed(l); ok {
			emit(s)
		}
	}
	for {
		select {
		case l := <-lines:
			feed(l)
		case err := <-done:
			// The source stopped: what it queued is still ours.
			for {
				select {
				case l := <-lines:
					feed(l)
					continue
				default:
				}
				break
			}
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("source: %w", err)
			}
			return nil
		case <-ctx.Done():
			cancel()
			<-done
			return nil
		}
	}
}
