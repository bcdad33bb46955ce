package consensus

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"

	"github.com/meshward/meshward/intel"
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

	changes chan struct{} // external, coalescing
	sync    chan struct{} // internal: roster changed, refresh peerstore

	// Voter management (membership.go).
	observations chan raft.Observation
	observer     *raft.Observer
	health       healthTracker
	membershipCounters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	peers  map[peer.ID]bool // roster peers we protected and fed to the peerstore

	closeOnce sync.Once
	closeErr  error
}

// New starts a raft participant on h using the given stores. With
// cfg.Bootstrap and no existing state it founds a single-voter cluster and,
// once leader, admits itself to the roster; otherwise it waits to be added
// by a leader (see Join). ctx bounds the background loops; Close must still
// be called to shut raft down.
func New(ctx context.Context, h host.Host, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, cfg Config) (*Consensus, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.LocalID != h.ID().String() {
		return nil, fmt.Errorf("consensus config: LocalID = %s: does not match the host's peer ID %s", cfg.LocalID, h.ID())
	}
	c := &Consensus{
		cfg:     cfg,
		h:       h,
		log:     cfg.Logger,
		changes: make(chan struct{}, 1),
		sync:    make(chan struct{}, 1),
		peers:   map[peer.ID]bool{},
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.fsm = newFSM(c.notify)

	rl := newRaftLogger(cfg.Logger)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.LocalID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.Logger = rl
	if err := raft.ValidateConfig(rc); err != nil {
		c.cancel()
		return nil, fmt.Errorf("consensus config: %w", err)
	}

	c.layer = newStreamLayer(h)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  c.layer,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  rl.Named("transport"),
	})
	fail := func(err error) (*Consensus, error) {
		c.cancel()
		_ = trans.Close()
		_ = c.layer.Close()
		return nil, err
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			return fail(fmt.Errorf("check existing raft state: %w", err))
		}
		if !has {
			self := raft.Server{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(cfg.LocalID)}
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, raft.Configuration{Servers: []raft.Server{self}}); err != nil {
				return fail(fmt.Errorf("bootstrap cluster: %w", err))
			}
			c.log.Info("bootstrapped a new mesh", "id", cfg.LocalID)
		}
	}
	r, err := raft.NewRaft(rc, c.fsm, logs, stable, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	c.raft = r
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
	c.goroutine(c.leaderLoop)
	c.goroutine(c.peerLoop)
	c.goroutine(c.membershipLoop)
	return c, nil
}

func (c *Consensus) goroutine(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// track registers a stream handler with the wait group unless closed.
func (c *Consensus) track() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
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

// leaderLoop admits this node to the roster whenever it becomes leader and
// is not on it yet (the founding node, or a node added by configuration
// whose admission was never committed).
func (c *Consensus) leaderLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case leader := <-c.raft.LeaderCh():
			if !leader {
				continue
			}
			c.log.Info("became leader", "id", c.cfg.LocalID)
			for c.ctx.Err() == nil && c.raft.State() == raft.Leader {
				if m, ok := c.fsm.member(c.cfg.LocalID); ok && m.Voter {
					break
				}
				ctx, cancel := context.WithTimeout(c.ctx, attemptTimeout)
				err := c.applyLocal(ctx, c.admitCommand(c.cfg.LocalID, c.cfg.Site, true, c.listenAddrs()))
				cancel()
				if err == nil {
					c.log.Info("admitted self to the roster", "id", c.cfg.LocalID, "site", c.cfg.Site)
					break
				}
				c.log.Warn("admit self to the roster", "err", err)
				sleepCtx(c.ctx, 100*time.Millisecond)
			}
		}
	}
}

// peerLoop keeps every roster member's addresses in the peerstore and its
// connections protected, so any voter can reach any other.
func (c *Consensus) peerLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.sync:
		}
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
			c.h.ConnManager().Protect(id, connProtectTag)
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
}

func (c *Consensus) listenAddrs() []string {
	var out []string
	for _, a := range c.h.Addrs() {
		if len(out) == maxMemberAddrs {
			break
		}
		out = append(out, a.String())
	}
	return out
}

func parseAddrs(ss []string) []multiaddr.Multiaddr {
	var out []multiaddr.Multiaddr
	for _, s := range ss {
		if len(out) == maxMemberAddrs {
			break
		}
		if a, err := multiaddr.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *Consensus) admitCommand(id, site string, voter bool, addrs []string) []byte {
	cmd := Command{Type: CmdAdmit, At: time.Now().UTC(), Member: &Member{ID: id, Site: site, Voter: voter, Addrs: addrs}}
	b, err := cmd.Encode()
	if err != nil {
		panic(err) // a member is far below the size limit
	}
	return b
}

// Propose commits cmd to the mesh from any node: it is applied directly on
// the leader, or forwarded over libp2p to the leader, and retried across
// leader changes until ctx ends. It returns once the command is committed
// and applied on the leader, with the FSM's refusal if it refused it
// (ErrProtected, ErrAllowed, ErrInvalidCommand; test with errors.Is).
// Propose fills cmd.At with the local clock when it is zero.
//
// Cancelling ctx stops the wait, not the commit: a command handed to raft
// may still be committed after Propose returned ctx's error. Every command
// is idempotent, so proposing it again is safe.
func (c *Consensus) Propose(ctx context.Context, cmd Command) error {
	if cmd.At.IsZero() {
		cmd.At = time.Now().UTC()
	}
	if err := cmd.validate(); err != nil {
		return fmt.Errorf("propose %s: %w", cmd.Type, err)
	}
	data, err := cmd.Encode()
	if err != nil {
		return fmt.Errorf("propose: %w", err)
	}
	if err := c.retry(ctx, func(ctx context.Context) error { return c.proposeOnce(ctx, data, 0) }); err != nil {
		return fmt.Errorf("propose %s: %w", cmd.Type, err)
	}
	return nil
}

// retry runs attempt until it succeeds, fails finally, or ctx ends.
func (c *Consensus) retry(ctx context.Context, attempt func(context.Context) error) error {
	backoff := 20 * time.Millisecond
	for {
		if c.isClosed() {
			return ErrClosed
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		if err == nil || final(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		c.log.Debug("retrying", "err", err, "after", backoff)
		if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// proposeOnce applies data here if we lead, or forwards it to the leader.
func (c *Consensus) proposeOnce(ctx context.Context, data []byte, hops int) error {
	if c.raft.State() == raft.Leader {
		return c.applyLocal(ctx, data)
	}
	leader, err := c.leaderPeer()
	if err != nil {
		return err
	}
	if hops >= maxHops {
		return fmt.Errorf("%w: %d", ErrTooManyHops, hops)
	}
	return c.call(ctx, leader, &rpcRequest{Kind: rpcPropose, Hops: hops + 1, Command: data})
}

func (c *Consensus) leaderPeer() (peer.ID, error) {
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return "", ErrNoLeader
	}
	p, err := peer.Decode(string(id))
	if err != nil {
		return "", fmt.Errorf("leader id %q: %w", id, err)
	}
	if p == c.h.ID() {
		return "", fmt.Errorf("%w: we are named leader but are not leading", ErrNoLeader)
	}
	return p, nil
}

// applyLocal appends data to the log (we must be leader) and waits for it
// to be applied, returning the FSM's response error.
func (c *Consensus) applyLocal(ctx context.Context, data []byte) error {
	cmd, err := DecodeCommand(data)
	if err != nil {
		return err
	}
	if skew := time.Since(cmd.At); skew > maxClockSkew || skew < -maxClockSkew {
		return fmt.Errorf("%w: %s timestamp %s is %s from the leader's clock", ErrInvalidCommand, cmd.Type, cmd.At.Format(time.RFC3339), skew.Round(time.Second))
	}
	enqueue := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		enqueue = max(time.Until(dl), time.Millisecond)
	}
	f := c.raft.Apply(data, enqueue)
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // raft resolves every future, at the latest on shutdown
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrRaftShutdown) {
			return ErrClosed
		}
		if err != nil {
			return fmt.Errorf("apply %s: %w", cmd.Type, err)
		}
		if rerr, ok := f.Response().(error); ok && rerr != nil {
			return rerr
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Join asks member (any node of the mesh; it forwards to the leader) to
// admit us, presenting cfg.JoinToken. It retries until ctx ends and returns
// once the leader has admitted us to the roster and we see ourselves in the
// raft configuration. A wrong token returns ErrBadToken at once.
func (c *Consensus) Join(ctx context.Context, member peer.AddrInfo) error {
	if c.inConfig() && c.IsMember(c.cfg.LocalID) {
		return nil
	}
	if member.ID == c.h.ID() {
		return fmt.Errorf("join: %s is this node", member.ID)
	}
	if len(member.Addrs) > 0 {
		c.h.Peerstore().AddAddrs(member.ID, member.Addrs, peerstore.PermanentAddrTTL)
	}
	req := &rpcRequest{Kind: rpcJoin, Token: c.cfg.JoinToken, Node: c.cfg.LocalID, Site: c.cfg.Site, Addrs: c.listenAddrs()}
	if err := c.retry(ctx, func(ctx context.Context) error { return c.call(ctx, member.ID, req) }); err != nil {
		return fmt.Errorf("join through %s: %w", shortID(member.ID.String()), err)
	}
	for !c.inConfig() {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("join: admitted, but the configuration did not reach us: %w", ctx.Err())
		}
	}
	c.log.Info("joined the mesh", "through", member.ID)
	return nil
}

// joinOnce admits a joiner if we lead, or forwards the request.
func (c *Consensus) joinOnce(ctx context.Context, req *rpcRequest) error {
	if c.raft.State() != raft.Leader {
		leader, err := c.leaderPeer()
		if err != nil {
			return err
		}
		if req.Hops >= maxHops {
			return fmt.Errorf("%w: %d", ErrTooManyHops, req.Hops)
		}
		fwd := *req
		fwd.Hops++
		return c.call(ctx, leader, &fwd)
	}
	if c.cfg.JoinToken == "" {
		return ErrJoinDisabled
	}
	if subtle.ConstantTimeCompare([]byte(req.Token), []byte(c.cfg.JoinToken)) != 1 {
		c.log.Warn("join refused: bad token", "node", req.Node)
		return ErrBadToken
	}
	id, err := peer.Decode(req.Node)
	if err != nil {
		return fmt.Errorf("%w: joiner id %q: %v", ErrInvalidCommand, req.Node, err)
	}
	if len(req.Site) > maxSiteLen {
		return fmt.Errorf("%w: site is %d bytes, limit %d", ErrInvalidCommand, len(req.Site), maxSiteLen)
	}
	addrs := parseAddrs(req.Addrs)
	if len(addrs) > 0 {
		c.h.Peerstore().AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
	}
	c.h.ConnManager().Protect(id, connProtectTag)
	addrStrs := make([]string, len(addrs))
	for i, a := range addrs {
		addrStrs[i] = a.String()
	}

	cf := c.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	// A joiner starts as a non-voter; the membership loop promotes it once
	// it has proven reachable (membership.go). A node already in the
	// configuration (a retried join) keeps its suffrage.
	voter, present := false, false
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == req.Node {
			present, voter = true, s.Suffrage == raft.Voter
		}
	}
	if !present {
		timeout := attemptTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		sid, saddr := raft.ServerID(req.Node), raft.ServerAddress(req.Node)
		if err := c.raft.AddNonvoter(sid, saddr, 0, timeout).Error(); err != nil {
			return fmt.Errorf("add %s to the configuration: %w", shortID(req.Node), err)
		}
		c.log.Info("added to the configuration as a non-voter", "node", req.Node, "site", req.Site)
	}
	return c.applyLocal(ctx, c.admitCommand(req.Node, req.Site, voter, addrStrs))
}

func (c *Consensus) inConfig() bool {
	return c.knownInConfig(c.cfg.LocalID)
}

func (c *Consensus) knownInConfig(id string) bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// knownPeer reports whether id is on the roster or in the configuration.
func (c *Consensus) knownPeer(id string) bool {
	return c.IsMember(id) || c.knownInConfig(id)
}

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
	return s
}

// Close shuts raft down (this node stops participating; the configuration
// is not changed), removes the stream handlers and waits for every
// goroutine. It is idempotent.
func (c *Consensus) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		c.h.RemoveStreamHandler(RPCProtocol)
		c.raft.DeregisterObserver(c.observer)
		if err := c.raft.Shutdown().Error(); err != nil {
			c.closeErr = fmt.Errorf("shut down raft: %w", err)
		}
		_ = c.layer.Close()
		c.wg.Wait()
		for id := range c.peers {
			c.h.ConnManager().Unprotect(id, connProtectTag)
		}
	})
	return c.closeErr
}
