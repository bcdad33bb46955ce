package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Segmentation metrics: what the part did (applies, unchanged programs,
// failures by stage) and, read from the kernel at scrape time, the
// packets and bytes each segmentation rule matched, by chain and tag
// ("flow:<name>", "quarantine:src", "default-deny:<zone>", "mesh:<port>"):
// an observe-mode flow's packets are those it would have dropped.

var (
	segRulePackets = prometheus.NewDesc("meshward_segmentation_rule_packets_total",
		"Packets each segmentation rule matched (kernel counter), by chain and tag.", []string{"chain", "tag"}, nil)
	segRuleBytes = prometheus.NewDesc("meshward_segmentation_rule_bytes_total",
		"Bytes each segmentation rule matched (kernel counter), by chain and tag.", []string{"chain", "tag"}, nil)
)

// segCollector reads the segmentation rules' counters at scrape time.
type segCollector struct{ p *segmentPart }

func (c segCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- segRulePackets
	ch <- segRuleBytes
}

func (c segCollector) Collect(ch chan<- prometheus.Metric) {
	fw := c.p.firewall()
	if fw == nil || c.p.Status().Hash == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := fw.SegmentCounters(ctx)
	if err != nil {
		c.p.counts.scrapeErrors.Add(1)
		return
	}
	type key struct{ chain, tag string }
	sum := map[key][2]uint64{} // a flow's rules (per family, port range) summed
	var order []key
	for _, r := range cs {
		k := key{r.Chain, r.Tag}
		v, seen := sum[k]
		if !seen {
			order = append(order, k)
		}
		sum[k] = [2]uint64{v[0] + r.Packets, v[1] + r.Bytes}
	}
	for _, k := range order {
		v := sum[k]
		ch <- prometheus.MustNewConstMetric(segRulePackets, prometheus.CounterValue, float64(v[0]), k.chain, k.tag)
		ch <- prometheus.MustNewConstMetric(segRuleBytes, prometheus.CounterValue, float64(v[1]), k.chain, k.tag)
	}
}

// collectors are the segmentation part's metrics.
func (p *segmentPart) collectors() []prometheus.Collector {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	return []prometheus.Collector{
		segCollector{p},
		counter("meshward_segmentation_applies_total", "Segmentation programs applied to nftables (one transaction each).", p.counts.applies.Load),
		counter("meshward_segmentation_unchanged_total", "Segmentation syncs that found the program in force unchanged (nothing sent).", p.counts.unchanged.Load),
		counter("meshward_segmentation_compile_errors_total", "Segmentations that could not be compiled.", p.counts.compileErrors.Load),
		counter("meshward_segmentation_apply_errors_total", "Segmentation transactions that failed.", p.counts.applyErrors.Load),
		counter("meshward_segmentation_counter_read_errors_total", "Scrapes that could not read the segmentation rules' counters.", p.counts.scrapeErrors.Load),
	}
}
