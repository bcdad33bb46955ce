package alert

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshward/meshward/intel"
)

// Event is something the engine's rules may alert on. The node makes
// most of them itself; the compliance and process measurement parts raise
// theirs through the node (Node.RaiseAlertEvent): Kind "drift" with Key
// the node (or object) out of compliance, "breach" with Key the breached
// expectation, and the same Kind and Key with Resolved set when the
// condition clears.
type Event struct {
	// Kind is one of Kinds (not "metric").
	Kind string
	// Key names the condition: two events with the same Kind and Key are
	// about the same thing (a member's ID, a policy's ID, a feed's name).
	Key string
	// Severity of the event; rules may filter on it.
	Severity intel.Severity
	// Detail is shown to the operator (at most 1024 bytes are kept).
	Detail string
	// At is when it happened; zero means now.
	At time.Time
	// Resolved says the condition named by Kind and Key has cleared.
	Resolved bool

	// Optional attributes, for filters and group_by.
	Node      string
	Site      string
	Indicator intel.Indicator
	Action    intel.Action
}

// Alert states.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
	StateEvicted  = "evicted" // dropped from the engine's bounded state while firing
)

// Alert is the state of one (rule, group), as the viewer shows it.
type Alert struct {
	// ID is stable for a rule and group: a group that fires again keeps
	// it, and a silence of it holds across firings.
	ID            string         `json:"id"`
	Rule          string         `json:"rule"`
	Kind          string         `json:"kind"`
	Severity      intel.Severity `json:"severity"`
	Group         string         `json:"group"`
	State         string         `json:"state"`
	Since         time.Time      `json:"since"`
	ResolvedAt    time.Time      `json:"resolved_at,omitzero"`
	LastNotified  time.Time      `json:"last_notified,omitzero"`
	Notifications int            `json:"notifications"`
	// Events is how many events (or metric evaluations) fed the group
	// while it fired; Members how many distinct keys fire in it now.
	Events        int             `json:"events"`
	Members       int             `json:"members"`
	Detail        string          `json:"detail,omitempty"`
	Node          string          `json:"node,omitempty"`
	Site          string          `json:"site,omitempty"`
	Indicator     intel.Indicator `json:"indicator,omitzero"`
	SilencedUntil time.Time       `json:"silenced_until,omitzero"`
}

// Notification is one alert to deliver.
type Notification struct {
	Alert
	// At is when the engine decided it.
	At time.Time
	// Repeat is 0 for the first firing notification, n for the n-th
	// reminder (repeat_after).
	Repeat int
	// Sinks to deliver to: the rule's, less those over their rate limit.
	Sinks []string
}

// Drop reasons of Stats.Dropped.
const (
	DropRateLimited = "rate_limited" // a sink's token bucket was empty
	DropSilenced    = "silenced"     // the alert is silenced
	DropNoSink      = "no_sink"      // no sink configured to deliver to
	DropEvicted     = "evicted"      // a firing group evicted: its resolution is never sent
	DropGroupFull   = "group_full"   // a group tracks DefaultMaxKeys members already
	DropPendingFull = "pending_full" // a metric series could not be tracked: state full
	DropQueueFull   = "queue_full"   // the node's event output refused it (CountDrop)
)

// Stats are the engine's counters.
type Stats struct {
	Firing   int               // groups firing now
	Notified map[string]uint64 // notifications returned, by state ("firing", "repeat", "resolved")
	Dropped  map[string]uint64 // notifications or state not kept, by reason
}

// ErrNotFound: no alert with that ID is held.
var ErrNotFound = errors.New("alert not found")

// Options are the engine's collaborators.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sinks are the sinks configured (SinkWebhook, ...); a rule without
	// sinks goes to all of them.
	Sinks []string
}

type rule struct {
	Rule
	idx     int
	byKey   map[string]*group    // member key -> its group
	pending map[string]time.Time // metric series true since, not yet for long enough
}

type group struct {
	Alert
	rule    *rule
	members map[string]time.Time // member key -> last seen
	repeats int
	elem    *list.Element
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Engine holds the rules and their state. Its methods are safe for
// concurrent use.
type Engine struct {
	cfg   Config
	now   func() time.Time
	sinks []string

	mu       sync.Mutex
	rules    []*rule
	byKind   map[string][]*rule
	groups   map[string]*group // by alert ID
	lru      *list.List        // of *group, most recently updated first
	members  int
	pending  int
	recent   []Alert // resolved or evicted, oldest first, at most MaxRecent
	silences map[string]time.Time
	buckets  map[string]*bucket
	notified map[string]uint64
	dropped  map[string]uint64
}

// New checks cfg (against opts.Sinks) and returns an engine.
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(opts.Sinks); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{cfg: cfg, now: opts.Now, sinks: slices.Clone(opts.Sinks), byKind: map[string][]*rule{},
		groups: map[string]*group{}, lru: list.New(), silences: map[string]time.Time{},
		buckets: map[string]*bucket{}, notified: map[string]uint64{}, dropped: map[string]uint64{}}
	for i, r := range cfg.Rules {
		if len(r.GroupBy) == 0 {
			r.GroupBy = []string{"key"}
		}
		cr := &rule{Rule: r, idx: i, byKey: map[string]*group{}, pending: map[string]time.Time{}}
		e.rules = append(e.rules, cr)
		e.byKind[r.On] = append(e.byKind[r.On], cr)
	}
	return e, nil
}

// Config returns the configuration the engine runs.
func (e *Engine) Config() Config { return e.cfg }

// Wants reports whether any rule watches kind, so that a source may skip
// the work of making events nobody alerts on.
func (e *Engine) Wants(kind string) bool {
	return len(e.byKind[kind]) > 0
}

// Observe takes in one event and returns the notifications it causes.
func (e *Engine) Observe(ev Event) []Notification {
	rules := e.byKind[ev.Kind]
	if len(rules) == 0 || ev.Kind == KindMetric {
		return nil
	}
	ev.Key = bounded(ev.Key)
	if len(ev.Detail) > 1024 {
		ev.Detail = ev.Detail[:1024]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	var out []Notification
	for _, r := range rules {
		if ev.Resolved {
			out = e.resolveMember(out, r, ev.Key, now)
			continue
		}
		if !r.matches(ev) {
			continue
		}
		out = e.fire(out, r, ev, now)
	}
	return out
}

// matches applies the rule's filter.
func (r *rule) matches(ev Event) bool {
	f := r.Filter
	if f.MinSeverity != "" && severityRank(ev.Severity) < severityRank(f.MinSeverity) {
		return false
	}
	if f.Action != "" && ev.Action != f.Action {
		return false
	}
	if f.IndicatorType != "" && ev.Indicator.Type != f.IndicatorType {
		return false
	}
	if f.Site != "" && ev.Site != f.Site {
		return false
	}
	return true
}

// groupOf is the group key of ev under r.
func (r *rule) groupOf(ev Event) string {
	var b strings.Builder
	for i, f := range r.GroupBy {
		if i > 0 {
			b.WriteByte(',')
		}
		var v string
		switch f {
		case "key":
			v = ev.Key
		case "kind":
			v = ev.Kind
		case "node":
			v = ev.Node
		case "site":
			v = ev.Site
		case "indicator":
			if ev.Indicator.Value != "" {
				v = ev.Indicator.Key()
			}
		case "action":
			v = string(ev.Action)
		}
		b.WriteString(f)
		b.WriteByte('=')
		b.WriteString(bounded(v))
	}
	return b.String()
}

// bounded keeps s to 256 bytes: a longer value is replaced by its prefix
// and a hash of the whole.
func bounded(s string) string {
	if len(s) <= 256 {
		return s
	}
	h := sha256.Sum256([]byte(s))
	return s[:200] + "…" + hex.EncodeToString(h[:8])
}

// alertID is the stable ID of a rule's group.
func alertID(ruleName, grp string) string {
	h := sha256.Sum256([]byte(ruleName + "\x00" + grp))
	return hex.EncodeToString(h[:8])
}

// fire records ev in its group under r; a group that was not firing
// notifies.
func (e *Engine) fire(out []Notification, r *rule, ev Event, now time.Time) []Notification {
	gk := r.groupOf(ev)
	id := alertID(r.Name, gk)
	g := e.groups[id]
	if g == nil {
		e.makeRoom(1, nil)
		sev := r.Severity
		if sev == "" {
			sev = ev.Severity
		}
		if sev == "" {
			sev = intel.SeverityMedium
		}
		since := now
		if !ev.At.IsZero() && ev.At.Before(now) {
			since = ev.At
		}
		g = &group{Alert: Alert{ID: id, Rule: r.Name, Kind: ev.Kind, Severity: sev, Group: gk, State: StateFiring,
			Since: since, Node: ev.Node, Site: ev.Site, Indicator: ev.Indicator},
			rule: r, members: map[string]time.Time{}}
		g.elem = e.lru.PushFront(g)
		e.groups[id] = g
		g.Detail = ev.Detail
		g.Events = 1
		e.track(g, ev.Key, now)
		return e.notify(out, g, StateFiring, 0, now)
	}
	e.lru.MoveToFront(g.elem)
	g.Events++
	if ev.Detail != "" {
		g.Detail = ev.Detail
	}
	e.track(g, ev.Key, now)
	return e.repeatDue(out, g, now)
}

// track records member key as seen now in g.
func (e *Engine) track(g *group, key string, now time.Time) {
	if _, ok := g.members[key]; ok {
		g.members[key] = now
		return
	}
	if len(g.members) >= DefaultMaxKeys {
		e.dropped[DropGroupFull]++
		return
	}
	if other := g.rule.byKey[key]; other != nil && other != g {
		// The key moved to another group (its grouped fields changed).
		e.forget(other, key)
	}
	e.makeRoom(0, g)
	g.members[key] = now
	g.rule.byKey[key] = g
	g.Members = len(g.members)
	e.members++
}

// forget removes member key from g, without resolving g.
func (e *Engine) forget(g *group, key string) {
	if _, ok := g.members[key]; !ok {
		return
	}
	delete(g.members, key)
	delete(g.rule.byKey, key)
	g.Members = len(g.members)
	e.members--
}

// makeRoom evicts the groups updated longest ago (never keep) until one
// more group (newGroups 1) or member fits.
func (e *Engine) makeRoom(newGroups int, keep *group) {
	for len(e.groups)+newGroups > e.cfg.MaxGroups || e.members+e.pending+1-newGroups > e.cfg.MaxGroups {
		back := e.lru.Back()
		if back == nil {
			return
		}
		g := back.Value.(*group)
		if g == keep {
			if back = back.Prev(); back == nil {
				return
			}
			g = back.Value.(*group)
		}
		e.dropped[DropEvicted]++
		e.remove(g, StateEvicted, e.now())
	}
}

// remove drops g from the state and keeps it in the recent list.
func (e *Engine) remove(g *group, state string, now time.Time) {
	for k := range g.members {
		delete(g.rule.byKey, k)
	}
	e.members -= len(g.members)
	g.members = nil
	e.lru.Remove(g.elem)
	delete(e.groups, g.ID)
	a := g.Alert
	a.State, a.ResolvedAt, a.Members = state, now, 0
	if e.cfg.MaxRecent > 0 {
		if len(e.recent) >= e.cfg.MaxRecent {
			e.recent = slices.Delete(e.recent, 0, len(e.recent)-e.cfg.MaxRecent+1)
		}
		e.recent = append(e.recent, a)
	}
}

// resolveMember clears member key of r's group; the group resolves when
// it has none left.
func (e *Engine) resolveMember(out []Notification, r *rule, key string, now time.Time) []Notification {
	g := r.byKey[key]
	if g == nil {
		return out
	}
	e.forget(g, key)
	if len(g.members) > 0 {
		return out
	}
	return e.resolve(out, g, now)
}

// resolve ends g's firing with a resolved notification.
func (e *Engine) resolve(out []Notification, g *group, now time.Time) []Notification {
	e.remove(g, StateResolved, now)
	g.State, g.ResolvedAt = StateResolved, now
	return e.notify(out, g, StateResolved, 0, now)
}

// repeatDue re-notifies g if its rule repeats and the time has come.
func (e *Engine) repeatDue(out []Notification, g *group, now time.Time) []Notification {
	r := g.rule
	if r.RepeatAfter <= 0 || g.LastNotified.IsZero() || now.Sub(g.LastNotified) < r.RepeatAfter {
		return out
	}
	g.repeats++
	return e.notify(out, g, StateFiring, g.repeats, now)
}

// notify appends g's notification unless it is silenced or every sink is
// over its rate.
func (e *Engine) notify(out []Notification, g *group, state string, repeat int, now time.Time) []Notification {
	// Reminders are timed from the attempt, delivered or not: a silenced or
	// rate-limited alert is not retried at every evaluation.
	g.LastNotified = now
	if until, ok := e.silences[g.ID]; ok {
		if now.Before(until) {
			e.dropped[DropSilenced]++
			return out
		}
		delete(e.silences, g.ID)
	}
	want := g.rule.Sinks
	if len(want) == 0 {
		want = e.sinks
	}
	if len(want) == 0 {
		e.dropped[DropNoSink]++
		return out
	}
	var sinks []string
	for _, s := range want {
		if e.take(s, now) {
			sinks = append(sinks, s)
		} else {
			e.dropped[DropRateLimited]++
		}
	}
	if len(sinks) == 0 {
		return out
	}
	g.Notifications++
	a := g.Alert
	a.State = state
	switch {
	case state == StateResolved:
		e.notified[StateResolved]++
	case repeat > 0:
		e.notified["repeat"]++
	default:
		e.notified[StateFiring]++
	}
	return append(out, Notification{Alert: a, At: now, Repeat: repeat, Sinks: sinks})
}

// take takes a token of sink s's bucket.
func (e *Engine) take(s string, now time.Time) bool {
	rl := e.cfg.SinkRate
	b := e.buckets[s]
	if b == nil {
		b = &bucket{tokens: float64(rl.Burst), last: now}
		e.buckets[s] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(float64(rl.Burst), b.tokens+el.Minutes()*float64(rl.PerMinute))
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Tick resolves the groups whose rule has resolve_after and that saw no
// event for that long, and re-notifies those due a reminder. Evaluate
// calls it; a node without metric rules may call it alone.
func (e *Engine) Tick() []Notification {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tick(nil, e.now())
}

func (e *Engine) tick(out []Notification, now time.Time) []Notification {
	var due []*group
	for _, g := range e.groups {
		due = append(due, g)
	}
	slices.SortFunc(due, func(a, b *group) int { return a.Since.Compare(b.Since) })
	for _, g := range due {
		if ra := g.rule.ResolveAfter; ra > 0 {
			for k, seen := range g.members {
				if now.Sub(seen) >= ra {
					e.forget(g, k)
				}
			}
			if len(g.members) == 0 {
				out = e.resolve(out, g, now)
				continue
			}
		}
		out = e.repeatDue(out, g, now)
	}
	return out
}

// Silence stops the notifications of alert id until the given time
// (firing, reminders and resolution alike); its state is still kept.
// The alert must be held (firing, or recent). A zero until lifts it.
func (e *Engine) Silence(id string, until time.Time) (Alert, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var a *Alert
	if g := e.groups[id]; g != nil {
		a = &g.Alert
	} else {
		for i := len(e.recent) - 1; i >= 0; i-- {
			if e.recent[i].ID == id {
				a = &e.recent[i]
				break
			}
		}
	}
	if a == nil {
		return Alert{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if until.IsZero() {
		delete(e.silences, id)
	} else {
		if _, ok := e.silences[id]; !ok && len(e.silences) >= e.cfg.MaxGroups {
			e.pruneSilences()
			if len(e.silences) >= e.cfg.MaxGroups {
				return Alert{}, fmt.Errorf("alert %s: too many silences (%d)", id, len(e.silences))
			}
		}
		e.silences[id] = until
	}
	out := *a
	out.SilencedUntil = until
	return out, nil
}

func (e *Engine) pruneSilences() {
	now := e.now()
	for id, until := range e.silences {
		if !now.Before(until) {
			delete(e.silences, id)
		}
	}
}

// Alerts returns the firing alerts (most recently updated first) and the
// recent resolved or evicted ones (newest first).
func (e *Engine) Alerts() (active, recent []Alert) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	with := func(a Alert) Alert {
		if until, ok := e.silences[a.ID]; ok && now.Before(until) {
			a.SilencedUntil = until
		}
		return a
	}
	for el := e.lru.Front(); el != nil; el = el.Next() {
		active = append(active, with(el.Value.(*group).Alert))
	}
	for i := len(e.recent) - 1; i >= 0; i-- {
		recent = append(recent, with(e.recent[i]))
	}
	return active, recent
}

// CountDrop counts a notification the deliverer could not hand on.
func (e *Engine) CountDrop(reason string) {
	e.mu.Lock()
	e.dropped[reason]++
	e.mu.Unlock()
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{Firing: len(e.groups), Notified: map[string]uint64{}, Dropped: map[string]uint64{}}
	for k, v := range e.notified {
		s.Notified[k] = v
	}
	for k, v := range e.dropped {
		s.Dropped[k] = v
	}
	return s
}
