package consensus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/meshward/meshward/consensus/certify"
	"github.com/meshward/meshward/consensus/certify/chainsync"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/refusal"
	"github.com/meshward/meshward/internal/routine"
)

const (
	transportTimeout = 2 * time.Second
	transportMaxPool = 3
	// attemptTimeout bounds one propose or join attempt, so that a dead
	// leader costs one attempt and not the caller's whole context.
	attemptTimeout = 5 * time.Second
	// maxClockSkew bounds how far a proposal's At may be from the leader's
	// clock; beyond it the leader refuses the command.
	maxClockSkew = 5 * time.Minute
	maxSiteLen   = 128
	// observationBuffer holds heartbeat observations between membership
	// ticks; raft drops (and counts) what does not fit, and a lost
	// "resumed" is healed by staleFailure.
	observationBuffer = 256
	// transportMaxInFlight is how many AppendEntries the leader pipelines
	// to one follower before it waits for the first answer, so that the
	// follower's log sync and the round trip of one batch overlap the
	// sending of the next.
	transportMaxInFlight = 4
	// maxAppendEntries bounds the entries of one AppendEntries and of one
	// log write, and so how many concurrent proposals share a batch: one
	// store transaction and one sync on each voter. A follower catching
	// up is sent full batches, transportMaxInFlight at once, held until
	// answered: of bulk commands (about 120 KB with 2,000 addresses, at
	// most maxCommandSize) that is some 60 MB, which bounds both.
	maxAppendEntries = 128
)

// Consensus is one node's raft participant and its view of the replicated
// state. All methods are safe for concurrent use.
type Consensus struct {
	cfg   Config
	h     host.Host
	log   *slog.Logger
	fsm   *fsm
	raft  *raft.Raft
	layer *streamLayer
	gate  *raftGate   // who may open raft streams (gate.go)
	fwd   *forwarder  // proposals to the leader, in batches (forward.go)
	joins joinLimiter // join attempts per remote peer (join.go)

	changes chan struct{} // external, coalescing
	sync    chan struct{} // internal: roster changed, refresh peerstore

	// Voter management (membership.go).
	observations chan raft.Observation
	observer     *raft.Observer
	health       healthTracker
	membershipCounters

	// group owns the loops and the RPC handlers; cancel ends its context
	// without waiting (Close waits once raft is down).
	group  *routine.Group
	cancel context.CancelFunc

	// Servers and edges (servers.go, edge.go, edge_snapshot.go).
	snaps            raft.SnapshotStore
	trans            raft.Transport
	edge             atomic.Pointer[edgeRunner] // set while (or once) an edge
	edgeMu           sync.Mutex                 // guards pub, certRefused, edge's start
	pub              *certify.Publisher
	certRefused      map[string]uint64
	agg              certAgg // the voters' certificates the servers share (certagg.go)
	chainSrv         *chainsync.Server
	snapCache        snapshotCache
	edgeSyncFailures atomic.Uint64
	edgeSnapshots    atomic.Uint64 // certified snapshots installed
	edgeFetches      atomic.Uint64 // chainsync answers taken
	edgePoll         atomic.Int64  // EdgePollInterval; tests change it

	mu     sync.Mutex
	closed bool
	peers  map[peer.ID]bool // roster peers we protected and fed to the peerstore

	closeOnce sync.Once
	closeErr  error
}

// New starts a raft participant on h using the given stores. With
// cfg.Bootstrap and no existing state it founds a single-voter cluster and,
// once leader, admits itself to the roster; otherwise it waits to be added
// by a leader (see Join). ctx bounds the participant's goroutines and its
// dials; if it ends before New returns, New stops what it started and
// returns ctx's error. Close must still be called to shut raft down and
// wait for the goroutines.
func New(ctx context.Context, h host.Host, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, cfg Config) (*Consensus, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.LocalID != h.ID().String() {
		return nil, fmt.Errorf("consensus config: LocalID = %s: does not match the host's peer ID %s", cfg.LocalID, h.ID())
	}
	rc, err := raftConfig(cfg)
	if err != nil {
		return nil, err
	}
	for i, s := range cfg.BootstrapOperators {
		if o, _ := parseBootstrapOperator(s); intel.NodeID(o.Key) == cfg.LocalID {
			return nil, fmt.Errorf("consensus config: bootstrap_operators[%d]: is this node's own key; node keys cannot be operators (make one with `meshward operator keygen`)", i)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start consensus: %w", err)
	}
	c := &Consensus{
		cfg:     cfg,
		h:       h,
		log:     cfg.Logger,
		changes: make(chan struct{}, 1),
		sync:    make(chan struct{}, 1),
		peers:   map[peer.ID]bool{},
		snaps:   snaps,

		certRefused: map[string]uint64{},
	}
	gctx, cancel := context.WithCancel(ctx)
	c.group, c.cancel = routine.New(gctx), cancel
	c.fwd = newForwarder(c.group, c.sendProposals)
	c.fsm = newFSM(c.notify)
	c.fsm.log = cfg.Logger.With("part", "fsm")
	c.fsm.chain.maxEntries, c.fsm.chain.maxBytes = cfg.ChainRecentEntries, cfg.ChainRecentBytes
	if c.fsm.verify = cfg.VerifyCache; c.fsm.verify == nil {
		c.fsm.verify = intel.NewVerifyCache(intel.DefaultVerifyCacheSize)
	}

	c.gate = newRaftGate(refusal.New(cfg.Logger))
	c.layer = newStreamLayer(c.group.Context(), h, c.gate, cfg.Logger)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          c.layer,
		MaxPool:         transportMaxPool,
		MaxRPCsInFlight: transportMaxInFlight,
		Timeout:         transportTimeout,
		Logger:          rc.Logger.Named("transport"),
	})
	c.trans = trans
	c.edgePoll.Store(int64(cfg.EdgePollInterval))
	fail := func(err error) (*Consensus, error) {
		c.cancel()
		_ = trans.Close()
		c.layer.closeAndWait()
		c.group.Close()
		return nil, err
	}
	if cfg.Bootstrap {
		if err := bootstrap(rc, logs, stable, snaps, trans, c.log); err != nil {
			return fail(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("start consensus: %w", err))
	}
	// Raft reads its newest entries back to replicate and apply them: a
	// cache of them saves a store transaction per entry.
	cache := newLogCache(logs, logCacheEntries, logCacheBytes)
	cache.onConfig = c.gate.refreshSoon
	r, err := raft.NewRaft(rc, restoreNotifier{c.fsm, c.gate.refreshSoon}, cache, stable, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	c.raft = r
	c.refreshGate()
	if err := ctx.Err(); err != nil {
		_ = r.Shutdown().Error()
		return fail(fmt.Errorf("start consensus: %w", err))
	}
	c.health.reset()
	c.observations = make(chan raft.Observation, observationBuffer)
	c.observer = raft.NewObserver(c.observations, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(c.observer)
	h.SetStreamHandler(RPCProtocol, c.handleRPC)
	h.SetStreamHandler(SnapshotProtocol, c.handleSnapshot)
	cs, err := chainsync.NewServer(c.group.Context(), h, c, func(p peer.ID) bool { return c.IsMember(p.String()) })
	if err != nil {
		_ = r.Shutdown().Error()
		return fail(err)
	}
	c.chainSrv = cs
	c.resumeEdge()
	c.group.Go(c.leaderLoop)
	c.group.Go(c.peerLoop)
	c.group.Go(c.membershipLoop)
	c.group.Go(c.gateLoop)
	return c, nil
}

// raftConfig is raft's configuration for cfg (defaults applied).
func raftConfig(cfg Config) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.LocalID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	// Proposals queue in a buffered channel and the leader takes all that
	// wait (up to MaxAppendEntries) into one log write and one
	// AppendEntries per follower.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = maxAppendEntries
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = newRaftLogger(cfg.Logger)
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("consensus config: %w", err)
	}
	return rc, nil
}

// bootstrap founds a single-voter cluster of this node unless the stores
// already hold raft state.
func bootstrap(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport, log *slog.Logger) error {
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("check existing raft state: %w", err)
	}
	if has {
		return nil
	}
	self := raft.Server{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(rc.LocalID)}
	if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, raft.Configuration{Servers: []raft.Server{self}}); err != nil {
		return fmt.Errorf("bootstrap cluster: %w", err)
	}
	log.Info("bootstrapped a new mesh", "id", string(rc.LocalID))
	return nil
}

func (c *Consensus) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// notify runs after every FSM apply and restore.
func (c *Consensus) notify() {
	for _, ch := range []chan struct{}{c.changes, c.sync} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// leaderLoop runs the leader's duties whenever this node becomes leader:
// initialise a mesh this node founds, and record its own vote.
func (c *Consensus) leaderLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-c.raft.LeaderCh():
			if !leader {
				continue
			}
			c.log.Info("became leader", "id", c.cfg.LocalID)
			for ctx.Err() == nil && c.raft.State() == raft.Leader {
				if err := c.leaderDuties(ctx); err != nil {
					c.log.Warn("found the mesh or record own vote", "err", err)
					sleepCtx(ctx, 100*time.Millisecond)
					continue
				}
				break
			}
		}
	}
}

// leaderDuties initialises a mesh this node founds (once: the mesh ID,
// the bootstrap operators and rules, and this node as the first member)
// and sets its roster entry's Voter flag. A leader never puts itself on
// the roster otherwise: every member but the founder is admitted with a
// join token (join.go).
func (c *Consensus) leaderDuties(ctx context.Context) error {
	if c.cfg.Bootstrap && c.MeshID() == "" {
		data, err := c.initCommand()
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err = c.applyLocal(actx, data)
		cancel()
		if err != nil && RefusalReason(err) != "already_initialised" {
			return fmt.Errorf("initialise the mesh: %w", err)
		}
		c.log.Info("initialised the mesh", "mesh", c.MeshID())
	}
	m, ok := c.fsm.member(c.cfg.LocalID)
	if !ok || m.Voter {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	if err := c.applyLocal(actx, voterCommand(m, true)); err != nil {
		return fmt.Errorf("record own vote in the roster: %w", err)
	}
	return nil
}

// initCommand is the mesh initialisation entry: a fresh mesh ID, the
// bootstrap operators (admins) and rules, and this node as the founder.
func (c *Consensus) initCommand() ([]byte, error) {
	id := make([]byte, meshIDBytes)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("mesh id: %w", err)
	}
	in := &Init{MeshID: hex.EncodeToString(id), Rules: DefaultRules(),
		Founder: &Member{ID: c.cfg.LocalID, Site: c.cfg.Site, Addrs: c.listenAddrs(), Observed: c.ownObserved()}}
	if c.cfg.BootstrapRules != nil {
		in.Rules = *c.cfg.BootstrapRules
	}
	for _, s := range c.cfg.BootstrapOperators {
		o, err := parseBootstrapOperator(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap operator: %w", err)
		}
		in.Operators = append(in.Operators, o)
	}
	return Command{Type: CmdInit, At: time.Now().UTC(), Init: in}.Encode()
}

// peerLoop keeps every roster member's addresses in the peerstore and its
// connections protected, so any voter can reach any other.
func (c *Consensus) peerLoop(ctx context.Context) {
	var servers []string // the raft servers protection was last given for
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.sync:
		}
		ids, all := c.fsm.takeRosterChanges()
		_, now := c.chainServers()
		if all || (len(servers) == 0) != (len(now) == 0) {
			// A restore, or the servers became known (or unknown):
			// protection changes for every member.
			servers = now
			c.refreshAllPeers(now)
			continue
		}
		// Only the members that changed, and the servers that came or
		// went: a mesh of a thousand nodes admits a thousand members,
		// and looking at every member after each admission would cost
		// every node the square of that.
		if !slices.Equal(now, servers) {
			for _, s := range servers {
				if !slices.Contains(now, s) {
					ids = append(ids, s)
				}
			}
			for _, s := range now {
				if !slices.Contains(servers, s) {
					ids = append(ids, s)
				}
			}
			servers = now
		}
		for _, s := range ids {
			c.refreshPeer(s, servers)
		}
	}
}

// protects reports whether a member's connections are protected from
// the connection manager's trimming: the raft servers' (the voters and
// standbys every replication, election, proposal and chain fetch goes
// to), or every member's while the servers are not known. An edge's
// connections are not: a server of a mesh of a thousand sites would
// otherwise hold a connection to each, past its connection limits.
func protects(id string, servers []string) bool {
	return len(servers) == 0 || slices.Contains(servers, id)
}

// refreshPeer gives the peerstore member s's addresses and protects its
// connections if it is a server (protects), or forgets it when it is no
// longer a member.
func (c *Consensus) refreshPeer(s string, servers []string) {
	id, err := peer.Decode(s)
	if err != nil || id == c.h.ID() {
		return
	}
	m, ok := c.fsm.member(s)
	c.mu.Lock()
	if c.peers == nil {
		c.peers = map[peer.ID]bool{}
	}
	if ok {
		c.peers[id] = true
	} else {
		delete(c.peers, id)
	}
	c.mu.Unlock()
	if !ok || !protects(s, servers) {
		c.h.ConnManager().Unprotect(id, connProtectTag)
	}
	if !ok {
		return
	}
	if addrs := parseAddrs(m.Addrs); len(addrs) > 0 {
		c.h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
	}
	if protects(s, servers) {
		c.h.ConnManager().Protect(id, connProtectTag)
	}
}

// refreshAllPeers gives the peerstore every member's addresses, protects
// the servers' connections (protects), and unprotects the rest.
func (c *Consensus) refreshAllPeers(servers []string) {
	seen := map[peer.ID]bool{}
	for _, m := range c.fsm.members() {
		id, err := peer.Decode(m.ID)
		if err != nil || id == c.h.ID() {
			continue
		}
		seen[id] = true
		if addrs := parseAddrs(m.Addrs); len(addrs) > 0 {
			c.h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
		}
		if protects(m.ID, servers) {
			c.h.ConnManager().Protect(id, connProtectTag)
		} else {
			c.h.ConnManager().Unprotect(id, connProtectTag)
		}
	}
	c.mu.Lock()
	for id := range c.peers {
		if !seen[id] {
			c.h.ConnManager().Unprotect(id, connProtectTag)
		}
	}
	c.peers = seen
	c.mu.Unlock()
}

// RosterVersion counts the roster's changes (admissions, departures,
// voter flags, restores): a caller that looked at the roster at one
// version need not look again until it moves.
func (c *Consensus) RosterVersion() uint64 { return c.fsm.rosterVersion() }

// Policies returns the policies active at now (ExpiresAt after now or
// zero), sorted by ID. The result is a copy.
func (c *Consensus) Policies(now time.Time) []intel.Policy { return c.fsm.activePolicies(now) }

// Policy returns the active policy with this ID, from local state.
func (c *Consensus) Policy(id string, now time.Time) (intel.Policy, bool) {
	return c.fsm.activePolicy(id, now)
}

// Protected returns the committed protected ranges, sorted.
func (c *Consensus) Protected() []netip.Prefix { return c.fsm.protectedPrefixes() }

// Roster returns the admitted members, sorted by ID.
func (c *Consensus) Roster() []Member { return c.fsm.members() }

// RosterVoters returns the IDs of the roster's voters, sorted: what
// Roster would give with Voter set, without copying the roster (a
// thousand members on a large mesh).
func (c *Consensus) RosterVoters() []string { return c.fsm.voterIDs() }

// MemberCount is the number of members on the roster.
func (c *Consensus) MemberCount() int {
	_, _, n := c.fsm.counts()
	return n
}

// IsMember reports whether nodeID is on the roster.
func (c *Consensus) IsMember(nodeID string) bool {
	_, ok := c.fsm.member(nodeID)
	return ok
}

// Changes delivers a coalesced notification after every FSM apply and
// restore; a slow reader sees one pending signal, never a backlog.
func (c *Consensus) Changes() <-chan struct{} { return c.changes }

// Leader returns the current leader's node ID, or "" if none is known.
func (c *Consensus) Leader() string {
	_, id := c.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this node is the leader.
func (c *Consensus) IsLeader() bool { return c.raft.State() == raft.Leader }

// Stats returns raft's statistics plus the sizes of the replicated state.
func (c *Consensus) Stats() map[string]string {
	s := c.raft.Stats()
	p, r, m := c.fsm.counts()
	s["policies"] = strconv.Itoa(p)
	s["protected"] = strconv.Itoa(r)
	s["members"] = strconv.Itoa(m)
	s["leader_id"] = c.Leader()
	s["local_id"] = c.cfg.LocalID
	voters, nonvoters := 0, 0
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			} else {
				nonvoters++
			}
		}
	}
	s["voters"] = strconv.Itoa(voters)
	s["nonvoters"] = strconv.Itoa(nonvoters)
	s["promotions"] = strconv.FormatUint(c.promotions.Load(), 10)
	s["demotions"] = strconv.FormatUint(c.demotions.Load(), 10)
	s["removals"] = strconv.FormatUint(c.removals.Load(), 10)
	s["observations_dropped"] = strconv.FormatUint(c.observer.GetNumDropped(), 10)
	s["forwarded_batches"] = strconv.FormatUint(c.fwd.batches.Load(), 10)
	s["forwarded_commands"] = strconv.FormatUint(c.fwd.commands.Load(), 10)
	s["kind"] = string(c.Kind())
	s["edge_promotions"] = strconv.FormatUint(c.edgePromotions.Load(), 10)
	s["edge_sync_failures"] = strconv.FormatUint(c.edgeSyncFailures.Load(), 10)
	s["edge_snapshots"] = strconv.FormatUint(c.edgeSnapshots.Load(), 10)
	s["edge_fetches"] = strconv.FormatUint(c.edgeFetches.Load(), 10)
	if e, ok := c.Edge(); ok {
		s["edge_applied_index"] = strconv.FormatUint(e.Applied, 10)
	}
	return s
}

// Close shuts raft down (this node stops participating; the configuration
// is not changed), removes the stream handlers and waits for every
// goroutine: the loops, the RPC handlers and the transport's connections.
// It is idempotent.
func (c *Consensus) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		c.h.RemoveStreamHandler(RPCProtocol)
		c.h.RemoveStreamHandler(SnapshotProtocol)
		c.chainSrv.Close()
		c.edgeMu.Lock()
		pub := c.pub
		c.edgeMu.Unlock()
		if pub != nil {
			pub.Close() // outside edgeMu: its publish runs the topic's validator, which may count under it
		}
		c.raft.DeregisterObserver(c.observer)
		if err := c.raft.Shutdown().Error(); err != nil {
			c.closeErr = fmt.Errorf("shut down raft: %w", err)
		}
		c.layer.closeAndWait()
		c.group.Close()
		c.mu.Lock()
		for id := range c.peers {
			c.h.ConnManager().Unprotect(id, connProtectTag)
		}
		c.mu.Unlock()
	})
	return c.closeErr
}
