package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/routine"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/store"
)

// Node is one running Meshward node: the subsystems of its Deps, wired.
type Node struct {
	deps *Deps
	log  *slog.Logger
	// live is the part of the configuration that Reload may change.
	live atomic.Pointer[liveConfig]

	stats      counters
	timelines  *timelines
	outbox     *outbox
	corr       *corroborator
	promote    *promoter // feed policies: reports into feed block proposals (promote.go)
	state      *stateSource
	respMu     sync.RWMutex // guards recon and deps.Responders, which Reload may replace
	recon      *responders.Reconciler
	admin      *admin.Server
	feeds      *feedsPart      // set by Start
	process    *processPart    // process measurement (process.go)
	segment    *segmentPart    // segmentation (segment.go)
	compliance *compliancePart // continuous compliance (compliance.go)
	alerts     *alerting       // alert.go
	// enforceLatency observes, per mesh-wide block, the time from its
	// creation by the proposer to its enforcement here.
	enforceLatency prometheus.Histogram

	// quar proposes automatic quarantines (quarantine.go).
	quar quarantiner

	group     *routine.Group // set by Start
	metricsLn *metricsServer
	started   time.Time

	lifeMu   sync.Mutex // guards starting, closing and reloading
	closed   bool
	closeErr error
}

// liveConfig is what Reload swaps.
type liveConfig struct {
	cfg       Config
	protected []netip.Prefix
}

// Start builds a node's dependencies from cfg (NewDeps), wires them (New)
// and starts it (Node.Start). Close stops it.
func Start(ctx context.Context, cfg Config, opts Options) (*Node, error) {
	d, err := NewDeps(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	n, err := New(d)
	if err != nil {
		return nil, errors.Join(err, d.Close())
	}
	if err := n.Start(ctx); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// New wires a node from its dependencies. It starts nothing: Start does.
// The node owns d from here on; Close closes it.
func New(d *Deps) (*Node, error) {
	if d.Responders == nil {
		d.Responders = &Responders{}
	}
	if d.Options.Clock == nil {
		d.Options.Clock = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.attack == nil {
		d.attack = &attackState{}
	}
	n := &Node{
		deps:      d,
		log:       d.Logger,
		timelines: newTimelines(10000),
		enforceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshward_policy_enforce_seconds",
			Help:    "Time from a mesh-wide block's creation to its enforcement on this node.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
	}
	n.live.Store(&liveConfig{cfg: d.Config, protected: d.Config.ProtectedPrefixes()})
	n.outbox = &outbox{key: d.Key, store: d.Store, log: d.Logger}
	n.corr = newCorroborator(d.ID, d.Config.Corroboration, d.Store, d.Consensus, d.Consensus,
		n.now, d.Logger, &n.stats)
	n.promote = newPromoter(d.ID, d.Consensus, d.Consensus, d.Store, n.now, d.Logger.With("part", "promote"))
	n.state = &stateSource{n: n}
	n.recon = responders.NewReconciler(n.state, d.Responders.List, responders.Options{
		Interval:   d.Config.Responders.Resync,
		Logger:     d.Logger.With("part", "responders"),
		OnEnforced: n.onEnforced,
	})
	cfg := d.Config
	srv, err := admin.New(admin.Options{
		Node:        newAdminAPI(n),
		Store:       d.Store,
		SocketPath:  cfg.SocketPath(),
		TCPAddr:     cfg.Admin.Listen,
		TLSCertFile: cfg.Admin.TLSCert,
		TLSKeyFile:  cfg.Admin.TLSKey,
		// The dashboard's loopback listener and sessions.
		DashboardHTTP: cfg.Admin.DashboardHTTP,
		Sessions:      admin.SessionOptions{MaxAge: cfg.Admin.SessionMaxAge, Idle: cfg.Admin.SessionIdle},
		Version:       d.Options.Version,
		Logger:        d.Logger.With("part", "admin"),
		Registerer:    d.Metrics,
		Now:           d.Options.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	n.admin = srv
	n.registerMetrics()
	if err := n.newAlerting(); err != nil { // alert.go
		return nil, err
	}
	n.process = newProcessPart(n)                   // process.go
	n.segment = newSegmentPart(n)                   // segment.go
	n.compliance = newCompliancePart(n)             // compliance.go
	d.Metrics.MustRegister(d.Consensus.Collector()) // meshward_consensus_refused_total{command,reason}
	d.Metrics.MustRegister(n.promote.collectors()...)
	d.Metrics.MustRegister(n.corr.dist.collectors()...)
	if d.inbound != nil { // gossip built by NewDeps hands its envelopes to n from now on
		d.inbound.bind(&gossipHandler{n})
	}
	return n, nil
}

// Start starts the node's loops, its log sources, peer discovery and its
// servers. It returns once every part is running; joining the mesh and
// connecting to peers continue in the background. If ctx ends before Start
// returns, Start stops and returns ctx's error; after that the node runs
// until Close.
func (n *Node) Start(ctx context.Context) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closed {
		return errors.New("start node: closed")
	}
	if n.group != nil {
		return errors.New("start node: already started")
	}
	n.started = n.now()
	n.group = routine.New(context.WithoutCancel(ctx))
	run := n.group.Context()
	// A start that hangs (a syslog port, a server) ends with ctx; the
	// caller then closes the node.
	stop := context.AfterFunc(ctx, n.group.Close)
	defer stop()
	d, cfg := n.deps, n.deps.Config

	d.Store.Start(run) // value-log collection
	d.Bootstrap.Start(run)
	d.PeerBook.Start(run)
	if d.MDNS != nil {
		if err := d.MDNS.Start(run); err != nil {
			return err
		}
	}
	if d.Events != nil {
		d.Events.Start(run)
	}
	n.recon.Start(run)
	n.group.Go(func(ctx context.Context) { n.corr.run(ctx, n.group.Go) })
	n.group.Go(n.promote.run)
	n.group.Go(n.pruneLoop)
	n.group.Go(n.watchConsensus)
	if err := n.startEdges(); err != nil { // edge.go
		return err
	}
	if len(cfg.Consensus.Join) > 0 {
		n.group.Go(n.join)
	}
	if d.Detectors != nil {
		if err := n.startDetectors(ctx, d.Detectors); err != nil {
			return err
		}
		if cfg.Corroboration.Distributed.Summaries {
			n.group.Go(n.summaryLoop) // distributed.go
		}
	}
	if err := n.startQuery(); err != nil { // query.go
		return err
	}
	if err := n.startFeeds(run); err != nil {
		return fmt.Errorf("start feeds: %w", err)
	}
	n.group.Go(n.alertLoop)      // alert.go
	n.group.Go(n.process.run)    // process.go
	n.group.Go(n.compliance.run) // compliance.go
	n.group.Go(n.segment.run)    // segment.go
	if err := n.admin.Start(run); err != nil {
		return fmt.Errorf("start admin API: %w", err)
	}
	if cfg.MetricsListen != "" {
		m, err := startMetricsServer(cfg.MetricsListen, d.Metrics)
		if err != nil {
			return err
		}
		n.metricsLn = m
	}
	if !stop() { // ctx ended: the node's goroutines are stopping
		return fmt.Errorf("start node: %w", context.Cause(ctx))
	}
	n.log.Info("node started", "id", d.ID, "addrs", n.Addrs(), "admin", cfg.SocketPath())
	return nil
}

// now is the node's clock.
func (n *Node) now() time.Time { return n.deps.Options.Clock() }

// join asks the configured members to admit this node, until one does.
func (n *Node) join(ctx context.Context) {
	for _, a := range n.deps.Config.Consensus.Join {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			continue // rejected by Validate already
		}
		if err := n.deps.Consensus.Join(ctx, *ai); err != nil {
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("join failed", "via", a, "err", err)
			continue
		}
		n.log.Info("joined the mesh", "via", shortID(ai.ID.String()))
		return
	}
}

// putDecision stores a local decision and has the responders enforce it.
func (n *Node) putDecision(p intel.Policy) error {
	if err := n.deps.Store.PutDecision(p); err != nil {
		return fmt.Errorf("store local decision: %w", err)
	}
	n.stats.local.Add(1)
	n.reconciler().Trigger()
	return nil
}

// PublishReport signs, stores and gossips an indicator report. It is on
// disk before it leaves the node; if gossip cannot take it now,
// anti-entropy carries it later.
func (n *Node) PublishReport(ctx context.Context, r intel.IndicatorReport) (uint64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	if !n.deps.Config.Gossip.Indicators {
		return 0, fmt.Errorf("%w: gossip.indicators is off on this node", admin.ErrUnavailable)
	}
	seq, err := n.outbox.send(ctx, intel.KindIndicator, r, r.Indicator, n.now(), n.deps.Gossip.PublishIndicator)
	if err != nil {
		return 0, err
	}
	n.stats.reports.Add(1)
	if n.promote.wants(r.Source) {
		n.promoteOwn(seq)
	}
	return seq, nil
}

// promoteOwn offers this node's own report, number seq, to the feed
// policies, as a report received from another node is.
func (n *Node) promoteOwn(seq uint64) {
	raw, err := n.deps.Store.GetEnvelope(n.deps.ID, seq)
	if err != nil {
		n.log.Error("read own report for promotion", "seq", seq, "err", err)
		return
	}
	env, err := intel.Open(raw)
	if err != nil {
		n.log.Error("open own report for promotion", "seq", seq, "err", err)
		return
	}
	n.promote.offer(env)
}

// Reports returns up to limit indicator reports held here, newest first.
func (n *Node) Reports(ctx context.Context, limit int) ([]store.ReportRecord, error) {
	return reportAPI{n}.Reports(ctx, limit)
}

// pruneLoop deletes envelopes older than the retention period, hourly.
func (n *Node) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	st, cfg := n.deps.Store, n.deps.Config
	for {
		now := n.now()
		if removed, err := st.Prune(now.Add(-cfg.Store.Retention)); err != nil {
			n.log.Error("prune store", "err", err)
		} else if removed > 0 {
			n.log.Info("pruned old envelopes", "count", removed, "retention", cfg.Store.Retention)
		}
		if _, err := st.PruneAudit(now.Add(-cfg.Admin.AuditRetention)); err != nil {
			n.log.Error("prune audit trail", "err", err)
		}
		// Acknowledgements outlive the sightings they acknowledge by nothing.
		if _, err := st.PruneAcks(now.Add(-cfg.Store.Retention)); err != nil {
			n.log.Error("prune acknowledgements", "err", err)
		}
		if _, err := st.PruneTriage(now.Add(-cfg.Store.Retention)); err != nil { // assignments and comments
			n.log.Error("prune triage", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchConsensus turns every consensus change into a reconcile pass, and
// reports policies as they are committed and expire.
func (n *Node) watchConsensus(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var w policyWatch
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.deps.Consensus.Changes():
			n.watchPolicies(&w)
			n.reconciler().Trigger()
			n.promote.consensusChanged()
		case <-tick.C:
			n.watchPolicies(&w)
		}
	}
}

func (n *Node) onEnforced(backend string, p intel.Policy, at time.Time) {
	n.timelines.mark(p.Indicator.Key(), at, enforced)
	n.emit(siem.PolicyEvent(siem.KindPolicyEnforced, n.deps.ID, p, backend, at))
	if !strings.HasPrefix(p.Author, "local:") {
		n.enforceLatency.Observe(at.Sub(p.CreatedAt).Seconds())
	}
}

// MetricsAddr is the address /metrics is served on, or "" when off.
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr()
}

// ID is the node's ID (its libp2p peer ID).
func (n *Node) ID() string { return n.deps.ID }

// Site is the configured site name.
func (n *Node) Site() string { return n.deps.Config.Site }

// Addrs are the node's listen addresses with its /p2p/ ID appended, as
// other nodes' peers and consensus.join entries take them.
func (n *Node) Addrs() []string {
	var out []string
	h := n.deps.Host
	p2p, err := multiaddr.NewComponent("p2p", h.ID().String())
	if err != nil {
		return nil
	}
	for _, a := range h.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()).String())
	}
	return out
}

// Host exposes the node's libp2p host.
func (n *Node) Host() host.Host { return n.deps.Host }

// Consensus exposes the node's consensus participant (read-only use).
func (n *Node) Consensus() *consensus.Consensus { return n.deps.Consensus }

// Gossip exposes the node's gossip layer.
func (n *Node) Gossip() *gossip.Gossip { return n.deps.Gossip }

// Store exposes the node's store.
func (n *Node) Store() *store.Store { return n.deps.Store }

// Metrics is the node's Prometheus registry.
func (n *Node) Metrics() *prometheus.Registry { return n.deps.Metrics }

// Timeline returns this node's timeline of an indicator.
func (n *Node) Timeline(ind intel.Indicator) (Timeline, bool) {
	return n.timelines.get(ind.Key())
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats { return n.stats.snapshot() }

// Close stops the node: intake first, then the subsystems in reverse order
// of their dependencies. It is idempotent and waits for every goroutine.
func (n *Node) Close() error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closed {
		return n.closeErr
	}
	n.closed = true
	var errs []error
	if n.group != nil && n.deps.Config.Consensus.LeaveOnShutdown {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.deps.Consensus.Leave(ctx); err != nil {
			errs = append(errs, fmt.Errorf("leave the mesh: %w", err))
		}
		cancel()
	}
	closeIf := func(name string, c interface{ Close() error }, ok bool) {
		if ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", name, err))
			}
		}
	}
	closeIf("admin API", n.admin, n.admin != nil)
	closeIf("metrics listener", n.metricsLn, n.metricsLn != nil)
	closeIf("feed runner", n.feeds, n.feeds != nil)
	closeIf("reconciler", n.reconciler(), true)
	if n.group != nil {
		n.group.Close()
	}
	errs = append(errs, n.deps.Close())
	n.closeErr = errors.Join(errs...)
	return n.closeErr
}

// loadAverage is the one-minute load average, or 0 where unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}
