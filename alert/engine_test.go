package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
)

// clock is a fake clock tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func statesOf(ns []Notification) []string {
	var out []string
	for _, n := range ns {
		s := n.Rule + ":" + n.State
		if n.Repeat > 0 {
			s += "(repeat)"
		}
		out = append(out, s)
	}
	return out
}

func newEngine(t *testing.T, c *clock, mutate func(*Config), rules ...Rule) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Rules = rules
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg, Options{Now: c.now, Sinks: []string{SinkWebhook, SinkSyslog}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func want(t *testing.T, what string, got []Notification, w ...string) {
	t.Helper()
	g := statesOf(got)
	if strings.Join(g, " ") != strings.Join(w, " ") {
		t.Fatalf("%s: notifications %q, want %q", what, g, w)
	}
}

func block(id, ip string) Event {
	return Event{Kind: KindPolicyCommitted, Key: id, Action: intel.ActionBlock,
		Indicator: intel.Indicator{Type: intel.IPv4, Value: ip}, Detail: "block " + ip}
}

func TestOneNotificationPerGroupWhileFiring(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, nil, Rule{Name: "mesh-block", On: KindPolicyCommitted, Filter: Filter{Action: intel.ActionBlock},
		Severity: intel.SeverityHigh, GroupBy: []string{"indicator"}})
	want(t, "first commit", e.Observe(block("p1", "203.0.113.7")), "mesh-block:firing")
	for range 3 { // re-committed, refreshed, seen again after a resync
		c.add(time.Minute)
		want(t, "same policy again", e.Observe(block("p1", "203.0.113.7")))
	}
	want(t, "another indicator", e.Observe(block("p2", "203.0.113.8")), "mesh-block:firing")
	want(t, "an allow is filtered out", e.Observe(Event{Kind: KindPolicyCommitted, Key: "p3", Action: intel.ActionAllow,
		Indicator: intel.Indicator{Type: intel.IPv4, Value: "203.0.113.9"}}))
	want(t, "tick without repeat_after", e.Tick())
	want(t, "expiry of p1", e.Observe(Event{Kind: KindPolicyCommitted, Key: "p1", Resolved: true}), "mesh-block:resolved")
	want(t, "p1 expired twice", e.Observe(Event{Kind: KindPolicyCommitted, Key: "p1", Resolved: true}))
	want(t, "committed anew", e.Observe(block("p1", "203.0.113.7")), "mesh-block:firing")
	active, recent := e.Alerts()
	if len(active) != 2 || len(recent) != 1 || recent[0].State != StateResolved || recent[0].ID != active[0].ID {
		t.Fatalf("alerts: active %+v, recent %+v", active, recent)
	}
	n := e.Observe(block("p4", "198.51.100.1"))
	if len(n) != 1 || n[0].Severity != intel.SeverityHigh || n[0].Group != "indicator=ipv4:198.51.100.1" ||
		strings.Join(n[0].Sinks, ",") != "webhook,syslog" {
		t.Fatalf("notification %+v", n)
	}
}

func TestGroupResolvesWhenItsLastMemberDoes(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, nil, Rule{Name: "site-down", On: KindNodeDown, GroupBy: []string{"site"}, Sinks: []string{SinkWebhook}})
	down := func(id string) Event {
		return Event{Kind: KindNodeDown, Key: id, Site: "paris", Severity: intel.SeverityHigh}
	}
	want(t, "a down", e.Observe(down("a")), "site-down:firing")
	want(t, "b down, same site", e.Observe(down("b")))
	want(t, "a back", e.Observe(Event{Kind: KindNodeDown, Key: "a", Resolved: true}))
	want(t, "unknown back", e.Observe(Event{Kind: KindNodeDown, Key: "zz", Resolved: true}))
	want(t, "b back", e.Observe(Event{Kind: KindNodeDown, Key: "b", Resolved: true}), "site-down:resolved")
}

func TestRepeatAfterWhileStillFiring(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, nil, Rule{Name: "drift", On: KindDrift, RepeatAfter: 10 * time.Minute})
	want(t, "drift", e.Observe(Event{Kind: KindDrift, Key: "n1"}), "drift:firing")
	c.add(9 * time.Minute)
	want(t, "before repeat_after", e.Tick())
	c.add(time.Minute)
	want(t, "at repeat_after", e.Tick(), "drift:firing(repeat)")
	want(t, "just repeated", e.Tick())
	c.add(10 * time.Minute)
	want(t, "an event when due", e.Observe(Event{Kind: KindDrift, Key: "n1"}), "drift:firing(repeat)")
	want(t, "back in compliance", e.Observe(Event{Kind: KindDrift, Key: "n1", Resolved: true}), "drift:resolved")
	if s := e.Stats(); s.Notified["repeat"] != 2 || s.Notified[StateFiring] != 1 || s.Notified[StateResolved] != 1 || s.Firing != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestResolveAfterQuiet(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, nil, Rule{Name: "severe", On: KindDetection, Filter: Filter{MinSeverity: intel.SeverityHigh},
		ResolveAfter: 30 * time.Minute})
	det := func(sev intel.Severity) Event {
		return Event{Kind: KindDetection, Key: "ipv4:192.0.2.1", Severity: sev}
	}
	want(t, "medium filtered", e.Observe(det(intel.SeverityMedium)))
	want(t, "critical", e.Observe(det(intel.SeverityCritical)), "severe:firing")
	c.add(20 * time.Minute)
	want(t, "high again", e.Observe(det(intel.SeverityHigh)))
	c.add(20 * time.Minute)
	want(t, "20 min after the last", e.Tick())
	c.add(10 * time.Minute)
	want(t, "30 min after the last", e.Tick(), "severe:resolved")
}

func TestEvictsTheGroupUpdatedLongestAgo(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, func(cfg *Config) { cfg.MaxGroups = 2; cfg.MaxRecent = 10 },
		Rule{Name: "down", On: KindNodeDown})
	down := func(id string) Event { return Event{Kind: KindNodeDown, Key: id} }
	e.Observe(down("a"))
	c.add(time.Second)
	e.Observe(down("b"))
	c.add(time.Second)
	e.Observe(down("a")) // a is now the most recently updated
	c.add(time.Second)
	want(t, "c down", e.Observe(down("c")), "down:firing")
	active, recent := e.Alerts()
	if len(active) != 2 || active[0].Group != "key=c" || active[1].Group != "key=a" {
		t.Fatalf("active %+v", active)
	}
	if len(recent) != 1 || recent[0].Group != "key=b" || recent[0].State != StateEvicted {
		t.Fatalf("recent %+v", recent)
	}
	if s := e.Stats(); s.Dropped[DropEvicted] != 1 {
		t.Fatalf("dropped %v", s.Dropped)
	}
	want(t, "evicted b back: nothing to resolve", e.Observe(Event{Kind: KindNodeDown, Key: "b", Resolved: true}))
}

func TestRateLimitPerSink(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, func(cfg *Config) { cfg.SinkRate = RateLimit{PerMinute: 1, Burst: 2} },
		Rule{Name: "hook", On: KindBreach, Sinks: []string{SinkWebhook}},
		Rule{Name: "log", On: KindFeedFailing, Sinks: []string{SinkSyslog}})
	want(t, "1", e.Observe(Event{Kind: KindBreach, Key: "1"}), "hook:firing")
	want(t, "2", e.Observe(Event{Kind: KindBreach, Key: "2"}), "hook:firing")
	want(t, "3 over the webhook's rate", e.Observe(Event{Kind: KindBreach, Key: "3"}))
	want(t, "the syslog sink has its own bucket", e.Observe(Event{Kind: KindFeedFailing, Key: "f"}), "log:firing")
	c.add(time.Minute)
	want(t, "a token back", e.Observe(Event{Kind: KindBreach, Key: "4"}), "hook:firing")
	if s := e.Stats(); s.Dropped[DropRateLimited] != 1 {
		t.Fatalf("dropped %v", s.Dropped)
	}
}

func TestSilence(t *testing.T) {
	c := newClock()
	e := newEngine(t, c, nil, Rule{Name: "leader", On: KindLeaderless, RepeatAfter: time.Minute})
	n := e.Observe(Event{Kind: KindLeaderless, Key: "raft"})
	want(t, "leaderless", n, "leader:firing")
	if _, err := e.Silence("nope", c.t.Add(time.Hour)); err == nil {
		t.Fatal("silenced an unknown alert")
	}
	a, err := e.Silence(n[0].ID, c.t.Add(time.Hour))
	if err != nil || !a.SilencedUntil.Equal(c.t.Add(time.Hour)) {
		t.Fatalf("silence: %+v, %v", a, err)
	}
	c.add(2 * time.Minute)
	want(t, "silenced reminder", e.Tick())
	want(t, "silenced resolution", e.Observe(Event{Kind: KindLeaderless, Key: "raft", Resolved: true}))
	c.add(time.Hour)
	want(t, "silence over", e.Observe(Event{Kind: KindLeaderless, Key: "raft"}), "leader:firing")
	if s := e.Stats(); s.Dropped[DropSilenced] != 2 {
		t.Fatalf("dropped %v", s.Dropped)
	}
}

func TestMetricConditionFor(t *testing.T) {
	c := newClock()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_queue_depth", Help: "x"}, []string{"queue", "site"})
	reg.MustRegister(g)
	e := newEngine(t, c, nil, Rule{Name: "queue-deep", On: KindMetric, Metric: &MetricCondition{
		Name: "test_queue_depth", Labels: map[string]string{"queue": "webhook"}, Op: ">", Value: 100, For: 5 * time.Minute}})
	reg.MustRegister(e.Collector()) // gathering it from Evaluate must not deadlock
	eval := func() []Notification {
		t.Helper()
		n, err := e.Evaluate(reg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	g.WithLabelValues("webhook", "a").Set(500)
	g.WithLabelValues("other", "a").Set(500) // not the queue the rule names
	want(t, "true for 0s", eval())
	c.add(4 * time.Minute)
	want(t, "true for 4m", eval())
	g.WithLabelValues("webhook", "a").Set(50)
	c.add(time.Minute)
	want(t, "false again: for restarts", eval())
	g.WithLabelValues("webhook", "a").Set(500)
	want(t, "true again for 0s", eval())
	c.add(5 * time.Minute)
	n := eval()
	want(t, "true for 5m", n, "queue-deep:firing")
	if !strings.Contains(n[0].Detail, `test_queue_depth{queue="webhook",site="a"} = 500 (> 100)`) || !n[0].Since.Equal(c.t.Add(-5*time.Minute)) {
		t.Fatalf("notification %+v", n[0])
	}
	c.add(time.Minute)
	want(t, "still true", eval())
	g.WithLabelValues("webhook", "b").Set(1000)
	want(t, "another series pending", eval())
	g.DeleteLabelValues("webhook", "a")
	want(t, "series gone", eval(), "queue-deep:resolved")
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cfg := DefaultConfig()
	cfg.EvalInterval = 0
	cfg.SinkRate.Burst = 0
	cfg.Rules = []Rule{
		{Name: "ok", On: KindDrift},
		{Name: "ok", On: "nonsense", Severity: "urgent", GroupBy: []string{"key", "colour", "key"},
			Sinks: []string{"webhook", "pager", "webhook"}, RepeatAfter: time.Second},
		{Name: "Bad Name", On: KindMetric},
		{Name: "m", On: KindMetric, Metric: &MetricCondition{Name: "1bad", Op: "=~", For: -time.Second,
			Labels: map[string]string{"bad-label": "x"}}},
		{Name: "d", On: KindDetection, Filter: Filter{Action: intel.ActionBlock, MinSeverity: "huge", IndicatorType: "ipx"}},
		{Name: "n", On: KindNodeDown, Metric: &MetricCondition{Name: "x"}, ResolveAfter: -1},
	}
	err := cfg.Validate([]string{SinkSyslog})
	var fields []string
	for _, f := range confcheck.Fields(err) {
		fields = append(fields, f.Field)
	}
	for _, w := range []string{"eval_interval", "sink_rate.burst", "rules[1].name", "rules[1].on", "rules[1].severity",
		"rules[1].group_by[1]", "rules[1].group_by[2]", "rules[1].sinks[0]", "rules[1].sinks[1]", "rules[1].repeat_after",
		"rules[2].name", "rules[2].metric", "rules[3].metric.name", "rules[3].metric.op", "rules[3].metric.for",
		"rules[3].metric.labels", "rules[4].filter.action", "rules[4].filter.min_severity", "rules[4].filter.indicator_type",
		"rules[4].resolve_after", "rules[5].metric", "rules[5].resolve_after"} {
		found := false
		for _, f := range fields {
			found = found || f == w
		}
		if !found {
			t.Errorf("no error names %s; got %v", w, err)
		}
	}
	if !strings.Contains(err.Error(), `rules[1].sinks[0]: not configured in the events section (got webhook)`) {
		t.Errorf("error text: %v", err)
	}
	if _, err := New(cfg, Options{}); err == nil {
		t.Error("New took a bad configuration")
	}
	if err := DefaultConfig().Validate(nil); err != nil {
		t.Errorf("defaults: %v", err)
	}
	var many Config = DefaultConfig()
	for i := range MaxRules + 1 {
		many.Rules = append(many.Rules, Rule{Name: "r" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26)), On: KindDrift})
	}
	if f := confcheck.Fields(many.Validate(nil)); len(f) != 1 || f[0].Field != "rules" {
		t.Errorf("too many rules: %v", f)
	}
}
