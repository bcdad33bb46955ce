package alert

import "github.com/prometheus/client_golang/prometheus"

var (
	descNotified = prometheus.NewDesc("meshward_alerts_notifications_total",
		"Alert notifications handed to the sinks, by state (firing, repeat, resolved).", []string{"state"}, nil)
	descDropped = prometheus.NewDesc("meshward_alerts_dropped_total",
		"Alert notifications not delivered, or alert state not kept, by reason.", []string{"reason"}, nil)
	descFiring = prometheus.NewDesc("meshward_alerts_firing",
		"Alert groups firing now.", nil, nil)
)

// Collector exports the engine's Stats as Prometheus metrics. Collect
// takes the engine's lock; Evaluate gathers before taking it, so the
// collector may sit in the registry Evaluate reads.
func (e *Engine) Collector() prometheus.Collector { return collector{e} }

type collector struct{ e *Engine }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNotified
	ch <- descDropped
	ch <- descFiring
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Stats()
	for _, st := range []string{StateFiring, "repeat", StateResolved} {
		ch <- prometheus.MustNewConstMetric(descNotified, prometheus.CounterValue, float64(s.Notified[st]), st)
	}
	for _, r := range []string{DropRateLimited, DropSilenced, DropNoSink, DropEvicted, DropGroupFull, DropPendingFull, DropQueueFull} {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descFiring, prometheus.GaugeValue, float64(s.Firing))
}
