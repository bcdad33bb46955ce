package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/responders/webhook"
)

// alertReceiver is a SOAR's webhook endpoint: it checks each delivery's
// signature and keeps the alerts, in the order received.
type alertReceiver struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server

	mu     sync.Mutex
	alerts []siem.Event
	bad    int
}

func newAlertReceiver(t *testing.T) *alertReceiver {
	r := &alertReceiver{t: t, secret: []byte("0123456789abcdef0123456789abcdef")}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err == nil {
			err = webhook.Verify(r.secret, req.Header.Get(webhook.HeaderTimestamp), body,
				req.Header.Get(webhook.HeaderSignature), time.Now(), 0)
		}
		var e siem.Event
		if err == nil {
			err = json.Unmarshal(body, &e)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.bad++
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if e.Kind == siem.KindAlert {
			r.alerts = append(r.alerts, e)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// configure points cfg's webhook at the receiver.
func (r *alertReceiver) configure(t *testing.T, cfg *Config) {
	secretFile := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secretFile, r.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Events.Webhook.URL = r.srv.URL
	cfg.Events.Webhook.SecretFile = secretFile
	cfg.Events.Webhook.MinBackoff = 10 * time.Millisecond
	cfg.Events.Webhook.MaxBackoff = 100 * time.Millisecond
}

// received returns the alerts received so far as "rule state group".
func (r *alertReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.alerts {
		out = append(out, e.Alert.Rule+" "+e.Alert.State+" "+e.Alert.Group)
	}
	return out
}

// waitFor waits until the alert "rule state group" has been received.
func (r *alertReceiver) waitFor(t *testing.T, want string) {
	t.Helper()
	waitFor(t, "alert "+want, func() bool {
		for _, g := range r.received() {
			if g == want {
				return true
			}
		}
		return false
	})
}

// A mesh-wide block is told once through the webhook, though the policy
// is committed again; its revocation resolves it; a silenced alert's
// resolution is not sent; a drift raised three times is told once.
// Deliveries keep their order, so an alert raised after the others marks
// the point by which any duplicate would have arrived.
func TestAlertsThroughWebhookOncePerGroup(t *testing.T) {
	recv := newAlertReceiver(t)
	n := startSingle(t, func(c *Config) {
		recv.configure(t, c)
		c.Alerts.EvalInterval = 100 * time.Millisecond
		c.Alerts.Rules = []alert.Rule{
			{Name: "mesh-block", On: alert.KindPolicyCommitted, Filter: alert.Filter{Action: intel.ActionBlock},
				GroupBy: []string{"indicator"}, Severity: intel.SeverityHigh, Sinks: []string{alert.SinkWebhook}},
			{Name: "drift", On: alert.KindDrift},
			{Name: "marker", On: alert.KindBreach},
		}
	})
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	api := newAdminAPI(n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	block := func(ip string) {
		t.Helper()
		ind := intel.IndicatorFromAddr(netip.MustParseAddr(ip))
		if err := api.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind,
			TTLSeconds: 3600, Reason: "alert test"})); err != nil {
			t.Fatal(err)
		}
	}
	block("203.0.113.61")
	recv.waitFor(t, "mesh-block firing indicator=ipv4:203.0.113.61")
	block("203.0.113.61") // committed again: the same policy, refreshed
	block("203.0.113.61")
	block("203.0.113.62") // committed after the refreshes: its alert comes after any they caused
	recv.waitFor(t, "mesh-block firing indicator=ipv4:203.0.113.62")
	if got := recv.received(); len(got) != 2 {
		t.Fatalf("alerts %q: want one per blocked indicator", got)
	}
	recv.mu.Lock()
	first := recv.alerts[0]
	recv.mu.Unlock()
	if first.Severity != intel.SeverityHigh || first.Alert.On != alert.KindPolicyCommitted || first.Alert.ID == "" ||
		first.Indicator.Value != "203.0.113.61" || !strings.Contains(first.Reason, "block ipv4:203.0.113.61") {
		t.Errorf("alert event %+v (%+v)", first, first.Alert)
	}

	// The viewer lists both; one silenced through the API resolves unsaid.
	cl := localAdminClient(t, n.deps.Config.SocketPath())
	list, err := cl.Alerts(ctx)
	if err != nil || len(list.Active) != 2 {
		t.Fatalf("GET /v1/alerts: %+v, %v", list, err)
	}
	var second string
	for _, a := range list.Active {
		if a.Group == "indicator=ipv4:203.0.113.62" {
			second = a.ID
		}
	}
	if a, err := cl.SilenceAlert(ctx, second, time.Hour); err != nil || a.SilencedUntil.IsZero() {
		t.Fatalf("silence %s: %+v, %v", second, a, err)
	}
	if _, err := cl.SilenceAlert(ctx, "00000000000000ff", time.Hour); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("silence of an unknown alert: %v", err)
	}
	if _, err := cl.SilenceAlert(ctx, second, 1000*time.Hour); err == nil {
		t.Fatal("a silence of 1000h was taken")
	}
	for _, ip := range []string{"203.0.113.62", "203.0.113.61"} {
		p, ok := api.MeshPolicy(intel.PolicyID(intel.ActionBlock, intel.IndicatorFromAddr(netip.MustParseAddr(ip))), time.Now())
		if !ok {
			t.Fatalf("no policy for %s", ip)
		}
		if err := api.SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: p.ID})); err != nil {
			t.Fatal(err)
		}
	}
	recv.waitFor(t, "mesh-block resolved indicator=ipv4:203.0.113.61")
	if got := recv.received(); len(got) != 3 {
		t.Fatalf("alerts %q: the silenced resolution was sent, or another", got)
	}

	// Drift raised through the hook, three times, then cleared.
	for range 3 {
		n.RaiseAlertEvent(alert.Event{Kind: alert.KindDrift, Key: "nft", Severity: intel.SeverityMedium, Detail: "2 blocks missing"})
	}
	n.RaiseAlertEvent(alert.Event{Kind: alert.KindDrift, Key: "nft", Resolved: true})
	n.RaiseAlertEvent(alert.Event{Kind: alert.KindBreach, Key: "end"})
	recv.waitFor(t, "marker firing key=end")
	got := recv.received()
	if want := []string{"drift firing key=nft", "drift resolved key=nft", "marker firing key=end"}; strings.Join(got[3:], "|") != strings.Join(want, "|") {
		t.Fatalf("alerts %q, want %q after the blocks", got[3:], want)
	}
	if recv.bad != 0 {
		t.Errorf("%d deliveries failed their signature check", recv.bad)
	}
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`meshward_alerts_notifications_total{state="firing"} 4`,
		`meshward_alerts_notifications_total{state="resolved"} 2`, `meshward_alerts_dropped_total{reason="silenced"} 1`,
		"meshward_alerts_firing 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Alert rules in the node's file are checked with the rest of it: each
// problem names its field under alerts.
func TestAlertConfigErrorsNameTheField(t *testing.T) {
	src := `
events:
  json_lines: /tmp/events.jsonl
alerts:
  eval_interval: 1ms
  rules:
    - name: mesh-block
      on: policy_committed
      sinks: [webhook]
    - name: mesh-block
      on: meteor_strike
    - name: queue
      on: metric
      metric: {name: "meshward_events_dropped_total", op: "=>", value: 0, for: 5m}
`
	_, err := ParseConfig([]byte(src))
	var fields []string
	for _, f := range confcheck.Fields(err) {
		fields = append(fields, f.Field)
	}
	for _, want := range []string{"alerts.eval_interval", "alerts.rules[0].sinks[0]", "alerts.rules[1].name",
		"alerts.rules[1].on", "alerts.rules[2].metric.op"} {
		if !strings.Contains(strings.Join(fields, " "), want) {
			t.Errorf("no error names %s: %v", want, err)
		}
	}
	if _, err := ParseConfig([]byte("alerts:\n  rules:\n    - name: x\n      on: drift\n      colour: red\n")); err == nil ||
		!strings.Contains(err.Error(), "colour") {
		t.Errorf("an unknown key in a rule: %v", err)
	}
	ok := "events:\n  json_lines: /tmp/e.jsonl\nalerts:\n  rules:\n    - {name: drift, on: drift, sinks: [json_lines], repeat_after: 1h}\n"
	if _, err := ParseConfig([]byte(ok)); err != nil {
		t.Errorf("a good rule: %v", err)
	}
}

// A metric rule is evaluated against the node's own registry: once a
// block is committed, meshward_mesh_policies >= 1 fires, and its alert is
// written to the JSON lines sink the rule names.
func TestMetricAlertFromTheNodeRegistry(t *testing.T) {
	jl := filepath.Join(t.TempDir(), "events.jsonl")
	n := startSingle(t, func(c *Config) {
		c.Events.JSONLines = jl
		c.Alerts.EvalInterval = 100 * time.Millisecond
		c.Alerts.Rules = []alert.Rule{{Name: "policies-held", On: alert.KindMetric, Sinks: []string{alert.SinkJSONLines},
			Metric: &alert.MetricCondition{Name: "meshward_mesh_policies", Op: ">=", Value: 1}}}
	})
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.71"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := newAdminAPI(n).SubmitOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind,
		TTLSeconds: 3600, Reason: "metric alert test"})); err != nil {
		t.Fatal(err)
	}
	var line siem.Event
	waitFor(t, "the metric alert in the JSON lines", func() bool {
		b, _ := os.ReadFile(jl)
		for _, l := range strings.Split(string(b), "\n") {
			var e siem.Event
			if json.Unmarshal([]byte(l), &e) == nil && e.Kind == siem.KindAlert {
				line = e
				return true
			}
		}
		return false
	})
	if line.Alert.Rule != "policies-held" || line.Alert.On != alert.KindMetric || line.Alert.State != alert.StateFiring ||
		line.Alert.Group != "key=meshward_mesh_policies" || !strings.Contains(line.Reason, "meshward_mesh_policies = 1 (>= 1)") {
		t.Fatalf("alert line %+v (%+v)", line, line.Alert)
	}
	active, _ := n.alerts.engine.Alerts()
	if len(active) != 1 || active[0].ID != line.Alert.ID {
		t.Fatalf("active alerts %+v", active)
	}
}

// A feed whose polls fail is alerted failing after alerts.feed_failures
// polls in a row, and resolved at its first good poll.
func TestFeedFailingAlert(t *testing.T) {
	jl := filepath.Join(t.TempDir(), "events.jsonl")
	src := filepath.Join(t.TempDir(), "list.txt") // absent: every poll fails
	n := startSingle(t, func(c *Config) {
		c.Events.JSONLines = jl
		c.Alerts.EvalInterval = 100 * time.Millisecond
		c.Alerts.FeedFailures = 2
		c.Alerts.Rules = []alert.Rule{{Name: "feed-failing", On: alert.KindFeedFailing}}
	})
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.AddFeed(ctx, feeds.Config{Name: "list", Path: src, Confidence: 70, TTL: time.Hour, Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	alerts := func() []string {
		b, _ := os.ReadFile(jl)
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			var e siem.Event
			if json.Unmarshal([]byte(l), &e) == nil && e.Kind == siem.KindAlert {
				out = append(out, e.Alert.State+" "+e.Alert.Group)
			}
		}
		return out
	}
	for range 2 { // two failed polls in a row
		if _, err := n.SyncFeed(ctx, "list"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the feed-failing alert", func() bool { return len(alerts()) == 1 })
	if err := os.WriteFile(src, []byte("198.51.100.20\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.SyncFeed(ctx, "list"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the feed-failing resolution", func() bool { return len(alerts()) == 2 })
	if got := alerts(); got[0] != "firing key=list" || got[1] != "resolved key=list" {
		t.Fatalf("alerts %q", got)
	}
}
