package certify

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	refusedDesc = prometheus.NewDesc("meshward_edge_refused_total",
		"Entries, certificates and snapshots the edge refused or dropped, by reason.", []string{"reason"}, nil)
	appliedDesc = prometheus.NewDesc("meshward_edge_applied_index",
		"Raft index of the last certified entry the edge applied.", nil, nil)
	entriesDesc = prometheus.NewDesc("meshward_edge_applied_entries_total",
		"Certified entries the edge applied.", nil, nil)
	pendingDesc = prometheus.NewDesc("meshward_edge_pending_entries",
		"Entries waiting for their certificates or for a missing entry.", nil, nil)
	certsDesc = prometheus.NewDesc("meshward_edge_pending_certificates",
		"Certificates waiting for their entries.", nil, nil)
	evidenceDesc = prometheus.NewDesc("meshward_edge_equivocations",
		"Pairs of conflicting voter certificates held as evidence.", nil, nil)
)

// NewCollector exports an edge's counters and gauges to Prometheus.
func NewCollector(e *Edge) prometheus.Collector { return collector{e} }

type collector struct{ e *Edge }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{refusedDesc, appliedDesc, entriesDesc, pendingDesc, certsDesc, evidenceDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counts := c.e.Counts()
	for _, r := range slices.Sorted(maps.Keys(counts)) {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(counts[r]), r)
	}
	s := c.e.Stats()
	ch <- prometheus.MustNewConstMetric(appliedDesc, prometheus.GaugeValue, float64(s.Applied))
	ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.CounterValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(certsDesc, prometheus.GaugeValue, float64(s.Certs))
	ch <- prometheus.MustNewConstMetric(evidenceDesc, prometheus.GaugeValue, float64(s.Evidence))
}
