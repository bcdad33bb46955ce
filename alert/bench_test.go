package alert

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// An event of a group already firing: the common case under an attack.
func BenchmarkObserveFiringGroup(b *testing.B) {
	c := newClock()
	e, _ := New(withRules(Rule{Name: "det", On: KindDetection, GroupBy: []string{"indicator"}, ResolveAfter: time.Hour}),
		Options{Now: c.now, Sinks: []string{SinkWebhook}})
	ev := Event{Kind: KindDetection, Key: "ipv4:192.0.2.1", Severity: intel.SeverityHigh,
		Indicator: intel.Indicator{Type: intel.IPv4, Value: "192.0.2.1"}}
	e.Observe(ev)
	b.ReportAllocs()
	for b.Loop() {
		e.Observe(ev)
	}
}

// A new group each time, at max_groups: every event evicts the oldest.
func BenchmarkObserveNewGroupsEvicting(b *testing.B) {
	c := newClock()
	cfg := withRules(Rule{Name: "det", On: KindDetection, ResolveAfter: time.Hour})
	cfg.SinkRate = RateLimit{PerMinute: 1 << 30, Burst: 1 << 30}
	e, _ := New(cfg, Options{Now: c.now, Sinks: []string{SinkWebhook}})
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "ipv4:10.0." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&255)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Observe(Event{Kind: KindDetection, Key: keys[i&(len(keys)-1)]})
		i++
	}
	if s := e.Stats(); s.Firing > cfg.MaxGroups {
		b.Fatalf("%d groups held, max %d", s.Firing, cfg.MaxGroups)
	}
}

// One evaluation of a metric rule over a family of 1,000 series.
func BenchmarkEvaluate1000Series(b *testing.B) {
	c := newClock()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bench_depth", Help: "x"}, []string{"q"})
	reg.MustRegister(g)
	for i := range 1000 {
		g.WithLabelValues(strconv.Itoa(i)).Set(float64(i))
	}
	e, _ := New(withRules(Rule{Name: "deep", On: KindMetric, Metric: &MetricCondition{Name: "bench_depth", Op: ">", Value: 500}}),
		Options{Now: c.now, Sinks: []string{SinkWebhook}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(reg); err != nil {
			b.Fatal(err)
		}
	}
}

func withRules(rules ...Rule) Config {
	cfg := DefaultConfig()
	cfg.Rules = rules
	return cfg
}
