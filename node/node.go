package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/nft"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/store"
)

// Options are the parts of a node that are not configuration.
type Options struct {
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// Version is reported by the admin API.
	Version string
	// NftablesNetNS, when positive, is a network namespace fd the
	// nftables backend works in instead of the process's own (tests).
	NftablesNetNS int
	// ConsensusTimeouts, when set, replace the Raft timing defaults
	// (tests and the testnet use shorter ones on loopback).
	ConsensusTimeouts *ConsensusTimeouts
}

// ConsensusTimeouts are Raft's timing knobs.
type ConsensusTimeouts struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
}

// Stats are a node's counters.
type Stats struct {
	Detections       uint64 `json:"detections"`
	Suppressed       uint64 `json:"detections_suppressed"` // of the mesh's own (protected) addresses
	SightingsStored  uint64 `json:"sightings_stored"`
	Evaluations      uint64 `json:"evaluations"`
	EvaluationsDrop  uint64 `json:"evaluations_dropped"`
	Proposals        uint64 `json:"proposals"`
	ProposalsRefused uint64 `json:"proposals_refused"`
	ProposalErrors   uint64 `json:"proposal_errors"`
	LocalDecisions   uint64 `json:"local_decisions"`
	IndicatorReports uint64 `json:"indicator_reports"`
}

// Node is one running Meshward node.
type Node struct {
	cfg  Config
	log  *slog.Logger
	id   string
	key  ed25519.PrivateKey
	host host.Host

	store  *store.Store
	gossip *gossip.Gossip
	boot   *gossip.Bootstrapper
	book   *gossip.PeerBook
	mdns   *gossip.MDNS
	syslog *detectors.SyslogSource
	cons   *consensus.Consensus
	recon  *responders.Reconciler
	// backends enforce; events carries detections and policy steps to
	// SIEM and SOAR (nil when none is configured).
	backends []responders.Backend
	firewall *nft.Firewall
	events   *siem.Output
	admin    *admin.Server
	dryrun   *responders.DryRun

	version   string
	nftNetNS  int
	started   time.Time
	protected []netip.Prefix
	metrics   *prometheus.Registry
	metricsLn *metricsServer
	// enforceLatency observes, per mesh-wide block, the time from its
	// creation by the proposer to its enforcement here.
	enforceLatency prometheus.Histogram
	timelines      *timelines
	evalCh         chan intel.Indicator

	mu        sync.Mutex
	inflight  map[string]bool // indicator keys with a proposal under way
	lastLocal []intel.Policy  // last local decisions read, kept if a read fails

	stats struct {
		detections, suppressed, stored, evals, evalDrops, proposals, refused, propErrs, local, reports atomic.Uint64
	}

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start builds and starts a node. It returns once every subsystem is
// running; joining the mesh and connecting to peers continue in the
// background. Close stops it.
func Start(ctx context.Context, cfg Config, opts Options) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	n := &Node{
		cfg:       cfg,
		protected: cfg.ProtectedPrefixes(),
		timelines: newTimelines(10000),
		evalCh:    make(chan intel.Indicator, 1024),
		inflight:  make(map[string]bool),
		metrics:   prometheus.NewRegistry(),
		version:   opts.Version,
		nftNetNS:  opts.NftablesNetNS,
		started:   time.Now(),
		enforceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshward_policy_enforce_seconds",
			Help:    "Time from a mesh-wide block's creation to its enforcement on this node.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
	}
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	libKey, edKey, err := gossip.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	n.key = edKey
	n.id = intel.NodeID(edKey.Public().(ed25519.PublicKey))
	n.log = log.With("node", shortID(n.id), "site", cfg.Site)

	n.store, err = store.Open(store.DefaultOptions(filepath.Join(cfg.DataDir, "store")))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	n.host, err = gossip.NewHost(gossip.HostConfig{Key: libKey, ListenAddrs: cfg.Listen})
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}

	snaps, err := raft.NewFileSnapshotStore(filepath.Join(cfg.DataDir, "raft"), 2, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	ccfg := consensus.Config{
		LocalID:          n.id,
		Site:             cfg.Site,
		Bootstrap:        cfg.Consensus.Bootstrap,
		JoinToken:        cfg.Consensus.JoinToken,
		MaxVoters:        cfg.Consensus.MaxVoters,
		DeadVoterTimeout: cfg.Consensus.DeadVoterTimeout,
		PromoteAfter:     cfg.Consensus.PromoteAfter,
		Logger:           n.log.With("part", "consensus"),
	}
	if t := opts.ConsensusTimeouts; t != nil {
		ccfg.HeartbeatTimeout, ccfg.ElectionTimeout = t.Heartbeat, t.Election
		ccfg.LeaderLeaseTimeout, ccfg.CommitTimeout = t.LeaderLease, t.Commit
	}
	rs := n.store.RaftStore()
	n.cons, err = consensus.New(n.ctx, n.host, rs, rs, snaps, ccfg)
	if err != nil {
		return nil, fmt.Errorf("start consensus: %w", err)
	}

	n.gossip, err = gossip.New(n.ctx, n.host, gossip.Options{
		Handler:      n,
		Roster:       n.cons,  // only admitted nodes speak
		Log:          n.store, // anti-entropy serves and fills gaps from the store
		SyncInterval: cfg.Gossip.SyncInterval,
		RateLimit:    rate.Limit(cfg.Gossip.RateLimit),
		RateBurst:    cfg.Gossip.RateBurst,
		Indicators:   indicatorOptions(cfg.Gossip.Indicators),
		Heartbeats: &gossip.HeartbeatOptions{
			Key:      edKey,
			Interval: cfg.Gossip.HeartbeatInterval,
			Info: func() gossip.Heartbeat {
				return gossip.Heartbeat{Version: n.version, Site: cfg.Site, Sightings: n.stats.stored.Load(), Load: loadAverage()}
			},
		},
		Registerer: n.metrics,
		Logger:     n.log.With("part", "gossip"),
	})
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	// Members we join through are gossip peers too.
	peers := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(cfg.Peers), cfg.Consensus.Join...))))
	n.boot, err = gossip.NewBootstrapper(n.host, peers, n.log.With("part", "bootstrap"))
	if err != nil {
		return nil, fmt.Errorf("bootstrap peers: %w", err)
	}
	n.boot.Start(n.ctx)
	n.book, err = gossip.NewPeerBook(n.host, filepath.Join(cfg.DataDir, "peers"), n.log.With("part", "peerbook"))
	if err != nil {
		return nil, fmt.Errorf("peer book: %w", err)
	}
	n.book.Start(n.ctx)
	if cfg.Gossip.MDNS {
		if n.mdns, err = gossip.StartMDNS(n.host, cfg.Gossip.MDNSService, n.log.With("part", "mdns")); err != nil {
			return nil, err
		}
	}

	if n.backends, err = n.buildBackends(); err != nil {
		return nil, err
	}
	if n.events, err = n.buildEvents(); err != nil {
		return nil, err
	}
	n.recon = responders.NewReconciler(n, n.backends, responders.Options{
		Interval:   cfg.Responders.Resync,
		Logger:     n.log.With("part", "responders"),
		OnEnforced: n.onEnforced,
	})
	n.recon.Start(n.ctx)

	n.goroutine(n.evaluateLoop)
	n.goroutine(n.pruneLoop)
	n.goroutine(n.watchConsensus)
	if len(cfg.Consensus.Join) > 0 {
		n.goroutine(n.join)
	}
	if cfg.Detectors.Enabled {
		if err := n.startDetectors(); err != nil {
			return nil, err
		}
	}
	n.admin, err = admin.Start(n.ctx, admin.Options{
		Node:        n,
		Store:       n.store,
		SocketPath:  cfg.SocketPath(),
		TCPAddr:     cfg.Admin.Listen,
		TLSCertFile: cfg.Admin.TLSCert,
		TLSKeyFile:  cfg.Admin.TLSKey,
		Version:     opts.Version,
		Logger:      n.log.With("part", "admin"),
		Registerer:  n.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("start admin API: %w", err)
	}
	n.registerMetrics()
	if cfg.MetricsListen != "" {
		if n.metricsLn, err = startMetricsServer(cfg.MetricsListen, n.metrics); err != nil {
			return nil, err
		}
	}
	n.log.Info("node started", "id", n.id, "addrs", n.Addrs(), "admin", cfg.SocketPath())
	return n, nil
}

func (n *Node) goroutine(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// startDetectors loads the rule pack and follows the configured logs.
func (n *Node) startDetectors() error {
	c := n.cfg.Detectors
	rs, err := detectors.LoadRules(c.RulesDir)
	if err == nil && len(c.Rules) > 0 {
		rs, err = rs.Select(c.Rules...)
	}
	if err != nil {
		return fmt.Errorf("detectors: %w", err)
	}
	eng, err := detectors.NewRulesEngine(rs, detectors.EngineOptions{Allow: n.protected, MaxSources: c.MaxSources})
	if err != nil {
		return fmt.Errorf("detectors: %w", err)
	}
	n.registerEngineMetrics(eng)
	// Each source feeds the shared engine on its own, so that one failing
	// (a port in use, journalctl missing) does not stop the others.
	run := func(name string, src detectors.Source) {
		n.goroutine(func() {
			if err := detectors.Run(n.ctx, src, eng, n.onDetection); err != nil && n.ctx.Err() == nil {
				if errors.Is(err, detectors.ErrJournalctlMissing) {
					err = fmt.Errorf("detectors.journald is enabled but journalctl is not installed: %w", err)
				}
				n.log.Error("log source stopped", "source", name, "err", err)
			}
		})
	}
	if len(c.Paths) > 0 {
		run("files", &detectors.GlobSource{Patterns: c.Paths, FromStart: c.FromStart, PollInterval: c.PollInterval})
	}
	if c.Journald.Enabled {
		run("journald", &detectors.JournaldSource{Matches: c.Journald.Matches})
	}
	if sl := c.Syslog; sl.Enabled {
		sys := &detectors.SyslogSource{UDPAddr: sl.UDP, TCPAddr: sl.TCP, MaxMessageBytes: sl.MaxMessageBytes,
			MaxConns: sl.MaxConns, IdleTimeout: sl.IdleTimeout}
		run("syslog", sys)
		select {
		case <-sys.Ready():
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
		udp, tcp := sys.Addrs()
		if (sl.UDP != "" && udp == nil) || (sl.TCP != "" && tcp == nil) {
			return fmt.Errorf("detectors.syslog: cannot listen on udp %q / tcp %q (see the log)", sl.UDP, sl.TCP)
		}
		n.syslog = sys
		n.log.Info("syslog listening", "udp", udp, "tcp", tcp)
	}
	return nil
}

// SyslogAddrs are the syslog listener's bound addresses (nil when off).
func (n *Node) SyslogAddrs() (udp, tcp net.Addr) {
	if n.syslog == nil {
		return nil, nil
	}
	return n.syslog.Addrs()
}

// join asks the configured members to admit this node, until one does.
func (n *Node) join() {
	for _, a := range n.cfg.Consensus.Join {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			continue // rejected by Validate already
		}
		if err := n.cons.Join(n.ctx, *ai); err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Warn("join failed", "via", a, "err", err)
			continue
		}
		n.log.Info("joined the mesh", "via", shortID(ai.ID.String()))
		return
	}
}

// onDetection is the first tier: this node's own evidence. It may block
// locally at once, and it signs, stores and publishes the sighting.
func (n *Node) onDetection(s intel.Sighting) {
	now := time.Now()
	key := s.Indicator.Key()
	// The detectors' allowlist holds the configured protected ranges; the
	// mesh's own addresses join the roster at run time, so they are
	// checked here: a node never reports another node of its mesh.
	for _, p := range n.cons.Protected() {
		if q, ok := s.Indicator.Prefix(); ok && p.Overlaps(q) {
			n.stats.suppressed.Add(1)
			n.log.Debug("detection of a protected address suppressed", "indicator", s.Indicator.Value, "protected", p)
			return
		}
	}
	n.stats.detections.Add(1)
	n.timelines.mark(key, now, detected)
	s.Site = n.cfg.Site
	n.emit(siem.DetectionEvent(n.id, s, now))
	n.log.Info("detection", "indicator", s.Indicator.Value, "detector", s.Detector, "count", s.Count)

	if n.cfg.LocalBlock.Enabled {
		p := intel.NewPolicy(intel.ActionBlock, s.Indicator, "local detection by "+s.Detector, "local:"+n.id, now, n.cfg.LocalBlock.TTL)
		if err := n.store.PutDecision(p); err != nil {
			n.log.Error("store local decision", "indicator", s.Indicator.Value, "err", err)
		} else {
			n.stats.local.Add(1)
			n.recon.Trigger()
		}
	}

	seq, err := n.store.NextSeq()
	if err != nil {
		n.log.Error("next sequence number", "err", err)
		return
	}
	raw, err := intel.SealJSON(n.key, intel.KindSighting, seq, now, s)
	if err != nil {
		n.log.Error("seal sighting", "err", err)
		return
	}
	env, err := intel.Open(raw)
	if err != nil {
		n.log.Error("open own sighting", "err", err)
		return
	}
	// On disk before it leaves the node.
	if _, err := n.store.PutEnvelope(env, now); err != nil {
		n.log.Error("store own sighting", "err", err)
		return
	}
	n.stats.stored.Add(1)
	n.timelines.mark(key, now, received)
	if err := n.gossip.Publish(n.ctx, raw); err != nil {
		n.log.Warn("publish sighting", "indicator", s.Indicator.Value, "err", err)
	}
	n.enqueueEvaluation(s.Indicator)
}

func indicatorOptions(on bool) *gossip.IndicatorOptions {
	if !on {
		return nil
	}
	return &gossip.IndicatorOptions{}
}

// PublishReport signs, stores and gossips an indicator report. It is on
// disk before it leaves the node; if gossip cannot take it now,
// anti-entropy carries it later.
func (n *Node) PublishReport(ctx context.Context, r intel.IndicatorReport) (uint64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	if !n.cfg.Gossip.Indicators {
		return 0, fmt.Errorf("%w: gossip.indicators is off on this node", admin.ErrUnavailable)
	}
	now := time.Now()
	seq, err := n.store.NextSeq()
	if err != nil {
		return 0, fmt.Errorf("next sequence number: %w", err)
	}
	raw, err := intel.SealJSON(n.key, intel.KindIndicator, seq, now, r)
	if err != nil {
		return 0, fmt.Errorf("seal indicator report: %w", err)
	}
	env, err := intel.Open(raw)
	if err != nil {
		return 0, fmt.Errorf("open own report: %w", err)
	}
	if _, err := n.store.PutEnvelope(env, now); err != nil {
		return 0, fmt.Errorf("store own report: %w", err)
	}
	n.stats.reports.Add(1)
	if err := n.gossip.PublishIndicator(ctx, raw); err != nil {
		n.log.Warn("publish indicator report; anti-entropy will carry it", "indicator", r.Indicator.Value, "err", err)
	}
	return seq, nil
}

// Reports returns up to limit indicator reports held here, newest first.
func (n *Node) Reports(_ context.Context, limit int) ([]store.ReportRecord, error) {
	return n.store.IndicatorReports(limit)
}

// HandleEnvelope implements gossip.Handler: it is called for every
// envelope that passed validation, before it is forwarded.
func (n *Node) HandleEnvelope(_ context.Context, env *intel.Envelope, _ peer.ID) error {
	now := time.Now()
	added, err := n.store.PutEnvelope(env, now)
	if err != nil {
		return fmt.Errorf("store envelope: %w", err)
	}
	if env.Kind == intel.KindIndicator {
		if added {
			n.stats.reports.Add(1)
		}
		return nil // intelligence only: no evaluation, no block
	}
	if !added || env.Kind != intel.KindSighting {
		return nil
	}
	s, err := intel.DecodeSighting(env)
	if err != nil {
		return err
	}
	n.stats.stored.Add(1)
	n.timelines.mark(s.Indicator.Key(), now, received)
	n.emit(siem.SightingEvent(n.id, env.OriginID(), s, now))
	n.enqueueEvaluation(s.Indicator)
	return nil
}

func (n *Node) enqueueEvaluation(ind intel.Indicator) {
	select {
	case n.evalCh <- ind:
	default:
		n.stats.evalDrops.Add(1)
		n.log.Warn("evaluation queue full; indicator will be evaluated on its next sighting", "indicator", ind.Value)
	}
}

func (n *Node) evaluateLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case ind := <-n.evalCh:
			n.evaluate(ind)
			n.stats.evals.Add(1)
		}
	}
}

// evaluate applies the corroboration rule to one indicator: when at least
// MinNodes distinct roster nodes sighted it within Window, and no mesh-wide
// block of it is active, propose one.
func (n *Node) evaluate(ind intel.Indicator) {
	now := time.Now()
	c := n.cfg.Corroboration
	recs, err := n.store.SightingsFor(ind, now.Add(-c.Window))
	if err != nil {
		n.log.Error("read sightings", "indicator", ind.Value, "err", err)
		return
	}
	origins := make(map[string]bool)
	var evidence []intel.Evidence
	for _, r := range recs {
		if origins[r.Origin] || !n.cons.IsMember(r.Origin) {
			continue
		}
		origins[r.Origin] = true
		evidence = append(evidence, intel.Evidence{Origin: r.Origin, Seq: r.Seq, Detector: r.Sighting.Detector, Seen: r.Sighting.LastSeen})
	}
	if len(origins) < c.MinNodes {
		return
	}
	if _, ok := n.cons.Policy(intel.PolicyID(intel.ActionBlock, ind), now); ok {
		return // already blocked mesh-wide
	}
	key := ind.Key()
	n.mu.Lock()
	if n.inflight[key] {
		n.mu.Unlock()
		return
	}
	n.inflight[key] = true
	n.mu.Unlock()

	sort.Slice(evidence, func(i, j int) bool { return evidence[i].Origin < evidence[j].Origin })
	p := intel.NewPolicy(intel.ActionBlock, ind,
		fmt.Sprintf("corroborated by %d nodes (%s)", len(origins), evidence[0].Detector),
		n.id, now, c.BlockTTL)
	p.Evidence = evidence
	n.stats.proposals.Add(1)
	n.goroutine(func() {
		defer func() {
			n.mu.Lock()
			delete(n.inflight, key)
			n.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
		defer cancel()
		err := n.cons.Propose(ctx, consensus.Command{Type: consensus.CmdPutPolicy, At: now, Policy: &p})
		switch {
		case err == nil:
			n.log.Info("mesh-wide block committed", "indicator", ind.Value, "nodes", len(origins))
		case errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrAllowed):
			n.stats.refused.Add(1)
			n.log.Warn("mesh-wide block refused", "indicator", ind.Value, "err", err)
		default:
			n.stats.propErrs.Add(1)
			if n.ctx.Err() == nil {
				n.log.Error("propose mesh-wide block", "indicator", ind.Value, "err", err)
			}
		}
	})
}

// pruneLoop deletes envelopes older than the retention period, hourly.
func (n *Node) pruneLoop() {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if removed, err := n.store.Prune(time.Now().Add(-n.cfg.Store.Retention)); err != nil {
			n.log.Error("prune store", "err", err)
		} else if removed > 0 {
			n.log.Info("pruned old envelopes", "count", removed, "retention", n.cfg.Store.Retention)
		}
		if _, err := n.store.PruneAudit(time.Now().Add(-n.cfg.Admin.AuditRetention)); err != nil {
			n.log.Error("prune audit trail", "err", err)
		}
		// Acknowledgements outlive the sightings they acknowledge by nothing.
		if _, err := n.store.PruneAcks(time.Now().Add(-n.cfg.Store.Retention)); err != nil {
			n.log.Error("prune acknowledgements", "err", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchConsensus turns every consensus change into a reconcile pass, and
// reports policies as they are committed and expire.
func (n *Node) watchConsensus() {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	active := map[string]intel.Policy{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.cons.Changes():
			active = n.watchPolicies(active)
			n.recon.Trigger()
		case <-tick.C:
			active = n.watchPolicies(active)
		}
	}
}

func (n *Node) onEnforced(backend string, p intel.Policy, at time.Time) {
	n.timelines.mark(p.Indicator.Key(), at, enforced)
	n.emit(siem.PolicyEvent(siem.KindPolicyEnforced, n.id, p, backend, at))
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

// MeshPolicies implements responders.StateSource.
func (n *Node) MeshPolicies(now time.Time) []intel.Policy { return n.cons.Policies(now) }

// LocalDecisions implements responders.StateSource. If the store cannot be
// read, the last decisions read are returned, so that a transient error
// never lifts a block.
func (n *Node) LocalDecisions(now time.Time) []intel.Policy {
	ds, err := n.store.Decisions(now)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		n.log.Error("read local decisions", "err", err)
		return n.lastLocal
	}
	n.lastLocal = ds
	return ds
}

// Protected implements responders.StateSource: configured ranges plus
// those committed to the mesh.
func (n *Node) Protected() []netip.Prefix {
	return append(append([]netip.Prefix{}, n.protected...), n.cons.Protected()...)
}

// ID is the node's ID (its libp2p peer ID).
func (n *Node) ID() string { return n.id }

// Site is the configured site name.
func (n *Node) Site() string { return n.cfg.Site }

// Addrs are the node's listen addresses with its /p2p/ ID appended, as
// other nodes' peers and consensus.join entries take them.
func (n *Node) Addrs() []string {
	var out []string
	p2p, err := multiaddr.NewComponent("p2p", n.host.ID().String())
	if err != nil {
		return nil
	}
	for _, a := range n.host.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()).String())
	}
	return out
}

// Consensus exposes the node's consensus participant (read-only use).
func (n *Node) Consensus() *consensus.Consensus { return n.cons }

// Gossip exposes the node's gossip layer.
func (n *Node) Gossip() *gossip.Gossip { return n.gossip }

// Store exposes the node's store.
func (n *Node) Store() *store.Store { return n.store }

// Metrics is the node's Prometheus registry.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics }

// Timeline returns this node's timeline of an indicator.
func (n *Node) Timeline(ind intel.Indicator) (Timeline, bool) {
	return n.timelines.get(ind.Key())
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		Detections:       n.stats.detections.Load(),
		Suppressed:       n.stats.suppressed.Load(),
		SightingsStored:  n.stats.stored.Load(),
		Evaluations:      n.stats.evals.Load(),
		EvaluationsDrop:  n.stats.evalDrops.Load(),
		Proposals:        n.stats.proposals.Load(),
		ProposalsRefused: n.stats.refused.Load(),
		ProposalErrors:   n.stats.propErrs.Load(),
		LocalDecisions:   n.stats.local.Load(),
		IndicatorReports: n.stats.reports.Load(),
	}
}

// Close stops the node: intake first, then the subsystems in reverse order
// of their dependencies. It is idempotent and waits for every goroutine.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.cons != nil && n.cfg.Consensus.LeaveOnShutdown {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := n.cons.Leave(ctx); err != nil {
				errs = append(errs, fmt.Errorf("leave the mesh: %w", err))
			}
			cancel()
		}
		n.cancel()
		closeIf := func(name string, c io.Closer, ok bool) {
			if ok {
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close %s: %w", name, err))
				}
			}
		}
		closeIf("admin API", n.admin, n.admin != nil)
		closeIf("metrics listener", n.metricsLn, n.metricsLn != nil)
		closeIf("reconciler", n.recon, n.recon != nil)
		if n.events != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.events.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("close events: %w", err))
			}
			cancel()
		}
		closeIf("nftables", n.firewall, n.firewall != nil)
		closeIf("bootstrapper", n.boot, n.boot != nil)
		closeIf("mDNS", n.mdns, n.mdns != nil)
		closeIf("gossip", n.gossip, n.gossip != nil)
		closeIf("peer book", n.book, n.book != nil)
		n.wg.Wait()
		closeIf("consensus", n.cons, n.cons != nil)
		closeIf("host", n.host, n.host != nil)
		closeIf("store", n.store, n.store != nil)
		n.closeErr = errors.Join(errs...)
	})
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
