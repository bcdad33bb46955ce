package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshward/meshward/detectors"
)

// registerMetrics exposes the node's counters, and those of subsystems
// that keep plain counters, on the node's registry. Values are read at
// scrape time, so the hot paths only bump atomics.
func (n *Node) registerMetrics() {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cons := n.deps.Consensus
	n.deps.Metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		counter("meshward_detections_total", "Detections by this node's own rules.", n.stats.detections.Load),
		counter("meshward_detections_suppressed_total", "Detections of the mesh's own (protected) addresses, not reported.", n.stats.suppressed.Load),
		counter("meshward_sightings_stored_total", "Sightings (own and received) newly written to the store.", n.stats.stored.Load),
		counter("meshward_evaluations_total", "Corroboration evaluations run.", n.stats.evals.Load),
		counter("meshward_evaluations_dropped_total", "Evaluations dropped because the queue was full.", n.stats.evalDrops.Load),
		counter("meshward_proposals_total", "Mesh-wide block proposals made by this node.", n.stats.proposals.Load),
		counter("meshward_proposals_deferred_total", "Blocks this node waited on their witnesses to propose (it proposes them only if none is in force by the end of its grace).", n.stats.deferred.Load),
		counter("meshward_proposals_refused_total", "Proposals refused by a protected range or an allow policy.", n.stats.refused.Load),
		counter("meshward_proposal_errors_total", "Proposals that failed to commit.", n.stats.propErrs.Load),
		counter("meshward_local_decisions_total", "Local (first-tier) blocks taken.", n.stats.local.Load),
		counter("meshward_config_reloads_total", "Configuration reloads applied.", n.stats.reloads.Load),
		counter("meshward_config_reload_failures_total", "Configuration reloads refused (the configuration in force stays).", n.stats.reloadFailures.Load),
		counter("meshward_responders_below_floor_total", "Desired blocks the responders dropped because a safety floor refuses them (loopback, link-local, multicast, a public suffix).",
			func() uint64 { return n.reconciler().Stats().BelowFloor }),
		gauge("meshward_mesh_policies", "Mesh-wide policies held (expired ones linger until the mesh's clock passes them).",
			func() float64 { return float64(cons.PolicyCount()) }),
		gauge("meshward_mesh_members", "Nodes on the roster.", func() float64 { return float64(cons.MemberCount()) }),
		gauge("meshward_raft_leader", "1 when this node is the Raft leader.", func() float64 {
			if cons.IsLeader() {
				return 1
			}
			return 0
		}),
	)
	n.deps.Metrics.MustRegister(n.enforceLatency)
	n.deps.Metrics.MustRegister(&quarantineCollector{q: &n.quar}) // meshward_quarantine_auto_total{result} (quarantine.go)
	// meshward_rules_technique_warnings{reason}, meshward_attack_load_failures_total
	n.deps.Metrics.MustRegister(&attackCollector{a: n.deps.attack})
	if d := n.deps.Detectors; d != nil {
		n.deps.Metrics.MustRegister(&engineCollector{d: d})
	}
}

var (
	engLines   = prometheus.NewDesc("meshward_detector_lines_total", "Log lines fed to the detectors.", nil, nil)
	engSkipped = prometheus.NewDesc("meshward_detector_lines_skipped_total", "Lines of a known kind that could not be parsed (malformed), skipped.", nil, nil)
	engFired   = prometheus.NewDesc("meshward_detector_fired_total", "Sightings emitted, by rule.", []string{"rule"}, nil)
	engSuppr   = prometheus.NewDesc("meshward_detector_suppressed_total", "Firings left out, by rule, because a rule of its suppressed_by had fired for the same source (one attack reported once).", []string{"rule"}, nil)
	engEvicted = prometheus.NewDesc("meshward_detector_evicted_total", "Per-source states evicted because the cap was reached, by rule.", []string{"rule"}, nil)
	engSources = prometheus.NewDesc("meshward_detector_sources", "Sources tracked now, by rule.", []string{"rule"}, nil)
	engCap     = prometheus.NewDesc("meshward_detector_sources_cap", "Cap on the sources each rule tracks.", nil, nil)
	engAhead   = prometheus.NewDesc("meshward_detector_lines_ahead_total", "Lines stamped ahead of the node's clock, reported at the clock.", nil, nil)
	engLocal   = prometheus.NewDesc("meshward_detector_lines_local_total", "Failures that name no remote party (sudo, su, local logins): counted, not reported.", nil, nil)
	engResolve = prometheus.NewDesc("meshward_detector_resolve_total", "Resolution of host-named sources (detectors.resolve_hosts), by result: added (address sightings), failed, limited (past the rate limit).", []string{"result"}, nil)
	engWatched = prometheus.NewDesc("meshward_detector_files_watched", "Followed log files that inotify wakes now (the others are only polled).", nil, nil)
	engAnomaly = prometheus.NewDesc("meshward_detector_anomaly_state_total", "Anomaly rules' baselines kept across restarts and reloads (data_dir/anomaly.json), by event: saved, save_failed, keys_restored, keys_skipped (a rule gone or changed), load_failed (the file moved aside; the rules learn again).", []string{"event"}, nil)
	engNoWatch = prometheus.NewDesc("meshward_detector_file_watch_failures_total", "Followed log files for which no inotify watch could be set (no inotify, watch limit reached): they are polled instead.", nil, nil)
)

// engineCollector exposes the counters of the detector engine in force.
type engineCollector struct{ d *Detectors }

var _ prometheus.Collector = (*engineCollector)(nil)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{engLines, engSkipped, engFired, engSuppr, engEvicted, engSources, engCap, engAhead, engLocal, engResolve, engWatched, engNoWatch, engAnomaly} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.engine.Load().Stats()
	ch <- prometheus.MustNewConstMetric(engLines, prometheus.CounterValue, float64(st.Lines))
	ch <- prometheus.MustNewConstMetric(engSkipped, prometheus.CounterValue, float64(st.Skipped))
	ch <- prometheus.MustNewConstMetric(engCap, prometheus.GaugeValue, float64(st.Cap))
	ch <- prometheus.MustNewConstMetric(engAhead, prometheus.CounterValue, float64(st.Ahead))
	ch <- prometheus.MustNewConstMetric(engLocal, prometheus.CounterValue, float64(st.Local))
	ch <- prometheus.MustNewConstMetric(engResolve, prometheus.CounterValue, float64(st.Resolved), "added")
	ch <- prometheus.MustNewConstMetric(engResolve, prometheus.CounterValue, float64(st.ResolveFailed), "failed")
	ch <- prometheus.MustNewConstMetric(engResolve, prometheus.CounterValue, float64(st.ResolveLimited), "limited")
	a := &c.d.anomaly
	for _, v := range []struct {
		event string
		n     uint64
	}{{"saved", a.saved.Load()}, {"save_failed", a.saveErrors.Load()}, {"keys_restored", a.restored.Load()},
		{"keys_skipped", a.skipped.Load()}, {"load_failed", a.loadErrors.Load()}} {
		ch <- prometheus.MustNewConstMetric(engAnomaly, prometheus.CounterValue, float64(v.n), v.event)
	}
	watched, failures := detectors.NotifyStats()
	ch <- prometheus.MustNewConstMetric(engWatched, prometheus.GaugeValue, float64(watched))
	ch <- prometheus.MustNewConstMetric(engNoWatch, prometheus.CounterValue, float64(failures))
	for _, r := range st.Rules {
		ch <- prometheus.MustNewConstMetric(engFired, prometheus.CounterValue, float64(r.Fired), r.Rule)
		ch <- prometheus.MustNewConstMetric(engSuppr, prometheus.CounterValue, float64(r.Suppressed), r.Rule)
		ch <- prometheus.MustNewConstMetric(engEvicted, prometheus.CounterValue, float64(r.Evicted), r.Rule)
		ch <- prometheus.MustNewConstMetric(engSources, prometheus.GaugeValue, float64(r.Sources), r.Rule)
	}
}

// metricsServer serves /metrics on a plain HTTP listener.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

func startMetricsServer(addr string, reg *prometheus.Registry) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	m := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		_ = m.srv.Serve(ln)
	}()
	return m, nil
}

func (m *metricsServer) Addr() string { return m.ln.Addr().String() }

func (m *metricsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	<-m.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
