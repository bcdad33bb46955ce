package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/refusal"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/siem"
	"github.com/meshward/meshward/store"
)

// Options are the parts of a node that are not configuration.
type Options struct {
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// LogLevel, when set, is the level of Logger's handler; Reload sets
	// it from log_level.
	LogLevel *slog.LevelVar
	// Version is reported by the admin API.
	Version string
	// NftablesNetNS, when positive, is a network namespace fd the
	// nftables backend works in instead of the process's own (tests).
	NftablesNetNS int
	// ConsensusTimeouts, when set, replace the Raft timing defaults
	// (tests and the testnet use shorter ones on loopback).
	ConsensusTimeouts *ConsensusTimeouts
	// ConnectionGater, when set, vets every libp2p connection of the
	// node (the testnet partitions a mesh with it); nil admits all.
	ConnectionGater connmgr.ConnectionGater
	// Clock is the node's clock; nil means time.Now.
	Clock func() time.Time
	// Store, when set, is used instead of opening one in the data
	// directory (for example an in-memory store). The caller closes it.
	Store *store.Store
	// VerifyCache, when set, is the node's cache of verified envelopes
	// (Deps.Verify) instead of one of its own: a simulated mesh's nodes
	// of one process share one, so that each envelope is verified once
	// in the process rather than once by each of its hundreds of nodes.
	// Verification is a pure function of the bytes, so what a node
	// accepts and refuses is the same either way.
	VerifyCache *intel.VerifyCache
}

// ConsensusTimeouts are Raft's timing knobs.
type ConsensusTimeouts struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
}

// Deps are the subsystems a node wires together, built from a Config by
// NewDeps. A node started from them owns them: Node.Close closes them.
type Deps struct {
	Config  Config
	Options Options
	Logger  *slog.Logger
	// Key is the node's identity; ID is derived from it.
	Key ed25519.PrivateKey
	ID  string

	Host      host.Host
	Store     *store.Store
	Consensus *consensus.Consensus
	Gossip    *gossip.Gossip
	// Bootstrap, PeerBook and MDNS (nil when off) keep the node
	// connected; Node.Start starts them.
	Bootstrap *gossip.Bootstrapper
	PeerBook  *gossip.PeerBook
	MDNS      *gossip.MDNS
	// Detectors are the rule engine and the log sources; Node.Start runs
	// the sources.
	Detectors *Detectors
	// Responders enforce; Events carries detections and policy steps to
	// SIEM and SOAR (nil when none is configured).
	Responders *Responders
	Events     *siem.Output
	// Metrics is the registry every part registers on.
	Metrics *prometheus.Registry
	// Verify remembers the envelopes whose signatures this node has
	// verified; consensus opens the proofs of automatic blocks through
	// it, so that one verified before costs a hash.
	Verify *intel.VerifyCache

	// inbound is gossip's Handler until a Node binds itself to it.
	inbound *inbound
	// attack is the ATT&CK catalog (intel.attack_path) and what it said
	// of the rules' techniques (attack.go).
	attack *attackState
	// cves are the KEV catalog and NVD records (intel.kev_path,
	// intel.nvd_path) for the risk score (risk.go); nil when neither is set.
	cves *cveData
	// gater refuses strangers' connections after a grace (gater.go).
	gater *meshGater
	// queryRefused counts the mesh-wide questions refused (query.go).
	queryRefused *refusal.Counter
	// storeKey encrypts the store and the Raft snapshots (atrest.go).
	storeKey store.Key
	// cancel ends the context the subsystems run on.
	cancel  context.CancelFunc
	closers []namedCloser
}

type namedCloser struct {
	name  string
	close func() error
}

// NewDeps builds every subsystem of a node from cfg: identity, store,
// libp2p host, consensus, gossip, peer discovery, detectors, responders and
// event outputs. ctx bounds the building; the subsystems then run until
// Close (or the Close of the Node built from them).
func NewDeps(ctx context.Context, cfg Config, opts Options) (_ *Deps, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &Deps{Config: cfg, Options: opts, Metrics: prometheus.NewRegistry(), cancel: cancel}
	// Building stops when ctx ends: consensus and gossip run on runCtx.
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	defer func() {
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			err = errors.Join(err, d.Close())
		}
	}()

	libKey, edKey, err := gossip.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	d.Key = edKey
	d.ID = intel.NodeID(edKey.Public().(ed25519.PublicKey))
	d.Logger = opts.Logger.With("node", shortID(d.ID), "site", cfg.Site)

	if d.storeKey, err = loadStoreKey(cfg.Store); err != nil {
		return nil, err
	}
	if d.Store = opts.Store; d.Store == nil {
		if d.Store, err = openStore(cfg.DataDir, cfg.Store, d.storeKey); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		d.onClose("store", d.Store.Close)
	}
	d.gater = newMeshGater(opts.ConnectionGater, cfg.Gossip, opts.Clock, refusal.New(d.Logger.With("part", "gater")))
	d.Host, err = gossip.NewHost(gossip.HostConfig{Key: libKey, ListenAddrs: cfg.Listen, ConnectionGater: d.gater,
		MuxerKeepAlive: cfg.Gossip.MuxerKeepAlive, MuxerMeasureRTT: cfg.Gossip.MuxerMeasureRTT})
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	d.onClose("host", d.Host.Close)
	if d.Verify = opts.VerifyCache; d.Verify == nil {
		d.Verify = intel.NewVerifyCache(intel.DefaultVerifyCacheSize)
	}
	if d.Consensus, err = d.newConsensus(runCtx); err != nil {
		return nil, err
	}
	d.onClose("consensus", d.Consensus.Close)
	d.gater.start(runCtx, d.Host, d.Consensus)
	d.onClose("gater", d.gater.Close)
	if d.Gossip, err = d.newGossip(runCtx); err != nil {
		return nil, err
	}
	if err := d.newDiscovery(); err != nil {
		return nil, err
	}
	d.onClose("gossip", d.Gossip.Close)
	// meshward_transport_refused_total: raft, sync, topics, connections.
	d.queryRefused = refusal.New(d.Logger.With("part", "query"))
	d.Metrics.MustRegister(refusal.NewCollector(d.Consensus.TransportRefusals(), d.Gossip.TransportRefusals(), d.gater.refused, d.queryRefused))
	if d.Detectors, err = newDetectors(cfg.Detectors, cfg.ProtectedPrefixes(), cfg.Corroboration.Distributed.partialOptions()); err != nil {
		return nil, err
	}
	d.attack = &attackState{}
	if cfg.Intel.AttackPath != "" {
		cat, err := loadCatalog(cfg.Intel.AttackPath, d.Logger)
		if err != nil {
			return nil, err
		}
		d.attack.set(cat, checkTechniques(cat, d.Detectors.rules(), d.Logger))
	}
	if d.cves, err = loadCVEData(cfg.Intel, d.Logger); err != nil {
		return nil, err
	}
	if d.Responders, err = newResponders(cfg.Responders, opts.NftablesNetNS, d.Logger); err != nil {
		return nil, err
	}
	// Reload may have replaced the responders: close those in force.
	d.onClose("responders", func() error { return d.Responders.Close() })
	if d.Events, err = newEvents(cfg.Events, cfg.Site, opts.Version, d.Store, d.Metrics, d.Logger); err != nil {
		return nil, err
	}
	if d.Events != nil {
		d.onClose("events", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return d.Events.Close(ctx)
		})
	}
	return d, nil
}

func (d *Deps) onClose(name string, f func() error) {
	d.closers = append(d.closers, namedCloser{name, f})
}

func (d *Deps) newConsensus(ctx context.Context) (*consensus.Consensus, error) {
	cfg := d.Config
	snaps, err := openSnapshots(cfg.DataDir, d.storeKey)
	if err != nil {
		return nil, err
	}
	ccfg := cfg.Consensus
	ccfg.LocalID, ccfg.Site = d.ID, cfg.Site
	ccfg.Logger = d.Logger.With("part", "consensus")
	ccfg.VerifyCache = d.Verify
	// A mesh founded here starts with this node's corroboration rule.
	ccfg.BootstrapRules = &consensus.Rules{MinNodes: cfg.Corroboration.MinNodes, Window: cfg.Corroboration.Window,
		BlockTTL: cfg.Corroboration.BlockTTL, Floors: intel.DefaultFloors(), RecidiveDoublings: cfg.Corroboration.RecidiveDoublings}
	cfg.Corroboration.Distributed.withFoundingRule(ccfg.BootstrapRules)
	if t := d.Options.ConsensusTimeouts; t != nil {
		ccfg.HeartbeatTimeout, ccfg.ElectionTimeout = t.Heartbeat, t.Election
		ccfg.LeaderLeaseTimeout, ccfg.CommitTimeout = t.LeaderLease, t.Commit
	}
	rs := d.Store.RaftStore()
	c, err := consensus.New(ctx, d.Host, rs, rs, snaps, ccfg)
	if err != nil {
		return nil, fmt.Errorf("start consensus: %w", err)
	}
	return c, nil
}

func (d *Deps) newGossip(ctx context.Context) (*gossip.Gossip, error) {
	cfg := d.Config
	d.inbound = &inbound{version: d.Options.Version, site: cfg.Site}
	opts := cfg.Gossip.Options()
	opts.Handler = d.inbound
	opts.Roster = d.Consensus             // only admitted nodes speak
	opts.Log = d.Store                    // anti-entropy serves and fills gaps from the store
	opts.SyncMaxAge = cfg.Store.Retention // nor refills what the store pruned
	opts.Heartbeats.Key, opts.Heartbeats.Info = d.Key, d.inbound.heartbeat
	opts.Registerer = d.Metrics
	opts.Logger = d.Logger.With("part", "gossip")
	opts.Verify = d.Verify // envelopes verified on receipt cost nothing as proofs
	g, err := gossip.New(ctx, d.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	return g, nil
}

// newDiscovery builds what keeps the node connected: the bootstrap peers
// (members we join through are gossip peers too), the peer book and mDNS.
func (d *Deps) newDiscovery() (err error) {
	cfg := d.Config
	peers := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(cfg.Peers), cfg.Consensus.Join...))))
	if d.Bootstrap, err = gossip.NewBootstrapper(d.Host, peers, d.Logger.With("part", "bootstrap")); err != nil {
		return fmt.Errorf("bootstrap peers: %w", err)
	}
	d.onClose("bootstrapper", d.Bootstrap.Close)
	if d.PeerBook, err = gossip.NewPeerBook(d.Host, filepath.Join(cfg.DataDir, "peers"), d.Logger.With("part", "peerbook")); err != nil {
		return fmt.Errorf("peer book: %w", err)
	}
	d.onClose("peer book", d.PeerBook.Close)
	if cfg.Gossip.MDNS {
		d.MDNS = gossip.NewMDNS(d.Host, cfg.Gossip.MDNSService, d.Logger.With("part", "mdns"))
		d.onClose("mDNS", d.MDNS.Close)
	}
	return nil
}

// Close closes every subsystem built, in the reverse order of building.
// It is idempotent.
func (d *Deps) Close() error {
	if d.cancel != nil {
		d.cancel()
	}
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		c := d.closers[i]
		if err := c.close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", c.name, err))
		}
	}
	d.closers = nil
	return errors.Join(errs...)
}

// inbound is gossip's Handler. Gossip is built before the node that
// handles what it receives; until a node binds itself, envelopes are
// refused (gossip ignores them without penalty and anti-entropy brings
// them again).
type inbound struct {
	version, site string
	h             atomic.Pointer[gossipHandler]
}

var _ gossip.Handler = (*inbound)(nil)

var errNotWired = errors.New("node not wired yet")

func (in *inbound) bind(h *gossipHandler) { in.h.Store(h) }

func (in *inbound) HandleEnvelope(ctx context.Context, env *intel.Envelope, from peer.ID) error {
	h := in.h.Load()
	if h == nil {
		return errNotWired
	}
	return h.HandleEnvelope(ctx, env, from)
}

// heartbeat is what this node announces of itself.
func (in *inbound) heartbeat() gossip.Heartbeat {
	hb := gossip.Heartbeat{Version: in.version, Site: in.site, Load: loadAverage()}
	if h := in.h.Load(); h != nil {
		hb.Sightings = h.n.stats.stored.Load()
	}
	return hb
}

// Responders are a node's enforcement backends, built through the
// responders registry.
type Responders = responders.Backends
