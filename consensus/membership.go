package consensus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Suffrage is a member's part in the raft configuration.
type Suffrage string

// Suffrages.
const (
	SuffrageVoter    Suffrage = "voter"
	SuffrageNonvoter Suffrage = "nonvoter"
	// SuffrageNone: on the roster but not in the configuration (being
	// admitted, or removed from raft with the roster entry still pending).
	SuffrageNone Suffrage = "none"
)

// Health is the leader's view of a server's reachability.
type Health string

// Healths.
const (
	HealthHealthy Health = "healthy"
	HealthFailing Health = "failing"
	// HealthUnknown: only the leader sees followers' heartbeats; every
	// other node reports its peers as unknown (itself as healthy).
	HealthUnknown Health = "unknown"
)

// MemberStatus is one member as the admin surface shows it.
type MemberStatus struct {
	Member
	Suffrage Suffrage `json:"suffrage"`
	// Kind is server (a voter), standby (a non-voter) or edge (in no
	// raft configuration; servers.go).
	Kind   Kind   `json:"kind"`
	Leader bool   `json:"leader"`
	Health Health `json:"health"`
	// Since is when the current health began, in the leader's view (zero
	// when unknown).
	Since time.Time `json:"since,omitzero"`
}

// staleFailure is how long a failure observation stays current without
// being repeated. Raft repeats it at least every transportTimeout +
// HeartbeatTimeout/2 while the peer fails, so an older one means that the
// "resumed" observation was lost (observers drop when full).
func (c *Consensus) staleFailure() time.Duration {
	return 2*transportTimeout + c.cfg.HeartbeatTimeout
}

// peerHealth is the leader's record of one server.
type peerHealth struct {
	failing  bool
	since    time.Time // when the current state began
	lastFail time.Time // last failure observation
}

// healthTracker is owned by the membership loop; Members reads it under mu.
type healthTracker struct {
	mu          sync.Mutex
	leaderSince time.Time // zero when not leading
	peers       map[raft.ServerID]*peerHealth
}

func (t *healthTracker) reset() {
	t.mu.Lock()
	t.leaderSince, t.peers = time.Time{}, map[raft.ServerID]*peerHealth{}
	t.mu.Unlock()
}

// observe records one raft observation.
func (t *healthTracker) observe(o raft.Observation, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		if t.leaderSince.IsZero() {
			t.leaderSince = now // only a leader heartbeats
		}
		p := t.peer(d.PeerID, now)
		if !p.failing {
			p.failing, p.since = true, d.LastContact
			if p.since.Before(t.leaderSince) || p.since.IsZero() {
				p.since = t.leaderSince
			}
		}
		p.lastFail = now
	case raft.ResumedHeartbeatObservation:
		if p := t.peers[d.PeerID]; p != nil && p.failing {
			p.failing, p.since = false, now
		}
	}
}

// peer returns the record for id, creating it healthy since now. Caller
// holds mu.
func (t *healthTracker) peer(id raft.ServerID, now time.Time) *peerHealth {
	p := t.peers[id]
	if p == nil {
		p = &peerHealth{since: now}
		t.peers[id] = p
	}
	return p
}

// view returns id's health at now, forgetting failures older than stale.
func (t *healthTracker) view(id raft.ServerID, now time.Time, stale time.Duration) (Health, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leaderSince.IsZero() {
		return HealthUnknown, time.Time{}
	}
	p := t.peer(id, now)
	if p.failing && now.Sub(p.lastFail) > stale {
		p.failing, p.since = false, now
	}
	if p.failing {
		return HealthFailing, p.since
	}
	return HealthHealthy, p.since
}

// membershipLoop runs on every node; while this node leads it tracks its
// followers' heartbeats and keeps the voter set full, odd and alive.
func (c *Consensus) membershipLoop(ctx context.Context) {
	tick := time.NewTicker(c.cfg.MembershipInterval)
	defer tick.Stop()
	for {
		// An edge never leads: it waits for its promotion (which
		// changes the configuration), not for the ticks.
		changed := c.configChanged()
		tc := tick.C
		if c.IsEdge() {
			tc = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case o := <-c.observations:
			c.health.observe(o, time.Now())
		case <-tc:
			if c.raft.State() != raft.Leader {
				c.health.reset()
				continue
			}
			c.health.mu.Lock()
			if c.health.leaderSince.IsZero() {
				c.health.leaderSince = time.Now()
			}
			c.health.mu.Unlock()
			rctx, cancel := context.WithTimeout(ctx, attemptTimeout)
			if err := c.reconcileVoters(rctx); err != nil && ctx.Err() == nil {
				c.log.Warn("review voter set", "err", err)
			}
			cancel()
		}
	}
}

// reconcileVoters makes at most one change per call, in this order:
// demote a voter dead for longer than DeadVoterTimeout when a healthy
// non-voter can take its place; promote a healthy non-voter while there
// are fewer than MaxVoters voters and the result is odd (or the step
// towards an odd count); bring one roster entry's Voter flag in line with
// the configuration.
func (c *Consensus) reconcileVoters(ctx context.Context) error {
	cf := c.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	servers := cf.Configuration().Servers
	if acted, err := c.removeDeparted(ctx, servers); acted || err != nil {
		return err
	}
	now := time.Now()
	stale := c.staleFailure()
	var voters, dead []raft.Server
	lost := 0 // servers failing for DeadVoterTimeout, of either suffrage
	type candidate struct {
		s raft.Server
		m Member
	}
	var cands []candidate
	for _, s := range servers {
		self := string(s.ID) == c.cfg.LocalID
		h, since := HealthHealthy, now
		if !self {
			h, since = c.health.view(s.ID, now, stale)
		}
		if h == HealthFailing && now.Sub(since) >= c.cfg.DeadVoterTimeout {
			lost++
		}
		switch s.Suffrage {
		case raft.Voter:
			voters = append(voters, s)
			if h == HealthFailing && now.Sub(since) >= c.cfg.DeadVoterTimeout {
				dead = append(dead, s)
			}
		case raft.Nonvoter:
			m, ok := c.fsm.member(string(s.ID))
			if ok && h == HealthHealthy && now.Sub(since) >= c.cfg.PromoteAfter {
				cands = append(cands, candidate{s, m})
			}
		}
	}
	// Longest-serving first: they have proven themselves; ID breaks ties.
	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(a.m.AdmittedAt.Compare(b.m.AdmittedAt), cmp.Compare(a.s.ID, b.s.ID))
	})
	slices.SortFunc(dead, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })

	timeout := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if len(dead) > 0 && len(cands) > 0 {
		d := dead[0]
		if err := waitFuture(ctx, c.raft.DemoteVoter(d.ID, 0, timeout)); err != nil {
			return fmt.Errorf("demote dead voter %s: %w", shortID(string(d.ID)), err)
		}
		c.demotions.Add(1)
		c.log.Warn("demoted an unreachable voter", "node", d.ID, "timeout", c.cfg.DeadVoterTimeout)
		return c.syncRosterVoter(ctx, string(d.ID), false)
	}
	n := len(voters)
	want := min(c.cfg.MaxVoters, n+len(cands))
	if want%2 == 0 && want > n {
		want-- // grow to an odd count, or not at all
	}
	if want > n {
		p := cands[0].s
		if err := waitFuture(ctx, c.raft.AddVoter(p.ID, p.Address, 0, timeout)); err != nil {
			return fmt.Errorf("promote %s: %w", shortID(string(p.ID)), err)
		}
		c.promotions.Add(1)
		c.log.Info("promoted a non-voter", "node", p.ID, "voters", n+1)
		return c.syncRosterVoter(ctx, string(p.ID), true)
	}
	if acted, err := c.promoteEdge(ctx, servers, lost); acted || err != nil {
		return err
	}
	// Self-heal the roster's Voter flags (a change whose roster update was
	// lost with a previous leader).
	for _, s := range servers {
		m, ok := c.fsm.member(string(s.ID))
		if ok && m.Voter != (s.Suffrage == raft.Voter) {
			return c.syncRosterVoter(ctx, m.ID, s.Suffrage == raft.Voter)
		}
	}
	return nil
}

// syncRosterVoter records a suffrage change in the roster entry.
func (c *Consensus) syncRosterVoter(ctx context.Context, id string, voter bool) error {
	m, ok := c.fsm.member(id)
	if !ok || m.Voter == voter {
		return nil
	}
	if err := c.applyLocal(ctx, voterCommand(m, voter)); err != nil {
		return fmt.Errorf("record suffrage of %s: %w", shortID(id), err)
	}
	return nil
}

// Members returns every roster member and every server in the raft
// configuration, sorted by ID, with its suffrage and health. Health is the
// leader's view; on other nodes peers report HealthUnknown.
func (c *Consensus) Members() []MemberStatus {
	now := time.Now()
	byID := map[string]*MemberStatus{}
	for _, m := range c.fsm.members() {
		byID[m.ID] = &MemberStatus{Member: m, Suffrage: SuffrageNone}
	}
	if c.IsEdge() {
		// An edge is in no raft configuration: the last configuration
		// entry it applied names the servers.
		voters, servers := c.chainServers()
		for _, id := range servers {
			ms := byID[id]
			if ms == nil {
				ms = &MemberStatus{Member: Member{ID: id}}
				byID[id] = ms
			}
			ms.Suffrage = SuffrageNonvoter
			if slices.Contains(voters, id) {
				ms.Suffrage = SuffrageVoter
			}
		}
	} else if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			ms := byID[string(s.ID)]
			if ms == nil {
				ms = &MemberStatus{Member: Member{ID: string(s.ID)}}
				byID[string(s.ID)] = ms
			}
			ms.Suffrage = SuffrageNonvoter
			if s.Suffrage == raft.Voter {
				ms.Suffrage = SuffrageVoter
			}
		}
	}
	leader := c.Leader()
	out := make([]MemberStatus, 0, len(byID))
	for id, ms := range byID {
		ms.Leader = id == leader
		ms.Kind = kindOf(ms.Suffrage)
		switch {
		case id == c.cfg.LocalID:
			ms.Health = HealthHealthy
		case ms.Suffrage == SuffrageNone:
			ms.Health = HealthUnknown
		default:
			ms.Health, ms.Since = c.health.view(raft.ServerID(id), now, c.staleFailure())
		}
		out = append(out, *ms)
	}
	slices.SortFunc(out, func(a, b MemberStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ErrLastVoter: the only voter cannot leave or be removed; the mesh would
// have no quorum left.
var ErrLastVoter = errors.New("the only voter cannot be removed")

// Leave removes this node from the mesh for good, for a graceful
// shutdown: it commits a leave signed with its own node key (LeaveMessage,
// checked by the FSM), and if it leads it hands leadership over; the
// leader then removes it from the raft configuration. The only voter
// cannot leave (ErrLastVoter). Call Close afterwards. Removing another
// member is an operator command (intel.OpRemoveMember).
func (c *Consensus) Leave(ctx context.Context) error {
	self := c.cfg.LocalID
	if !c.inConfig() && !c.IsMember(self) {
		return nil
	}
	if c.onlyVoter() {
		return fmt.Errorf("leave: %w", ErrLastVoter)
	}
	if c.IsMember(self) {
		lv, err := c.signLeave(time.Now().UTC())
		if err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		if err := c.Propose(ctx, Command{Type: CmdLeave, Leave: lv}); err != nil && RefusalReason(err) != "not_member" {
			return fmt.Errorf("leave: %w", err)
		}
	}
	if c.raft.State() == raft.Leader {
		err := waitFuture(ctx, c.raft.LeadershipTransfer())
		if errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			// The membership loop saw the committed leave first and is
			// already handing leadership over: wait for it to finish.
			err = c.waitNotLeader(ctx)
		}
		if err != nil {
			return fmt.Errorf("leave: hand over leadership: %w", err)
		}
	}
	c.log.Info("left the mesh")
	return nil
}

// waitNotLeader waits until this node no longer leads, or ctx ends.
func (c *Consensus) waitNotLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.raft.State() == raft.Leader {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// signLeave signs this node's leave with its node key.
func (c *Consensus) signLeave(issued time.Time) (*LeaveRequest, error) {
	priv := c.h.Peerstore().PrivKey(c.h.ID())
	if priv == nil {
		return nil, errors.New("sign leave: the host holds no private key")
	}
	sig, err := priv.Sign(LeaveMessage(c.MeshID(), c.cfg.LocalID, issued))
	if err != nil {
		return nil, fmt.Errorf("sign leave: %w", err)
	}
	return &LeaveRequest{Node: c.cfg.LocalID, Issued: issued, Sig: sig}, nil
}

// onlyVoter reports whether this node is the configuration's only voter.
func (c *Consensus) onlyVoter() bool {
	cf := c.raft.GetConfiguration()
	if cf.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || string(s.ID) == c.cfg.LocalID
		}
	}
	return self && voters == 1
}

// removeDeparted removes from the configuration one server that left or
// was removed by an operator (the FSM's departed set) and reports whether
// it acted. A departing leader hands leadership over first; the next
// leader removes it.
func (c *Consensus) removeDeparted(ctx context.Context, servers []raft.Server) (bool, error) {
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	for _, s := range servers {
		id := string(s.ID)
		if !c.fsm.isDeparted(id) || c.IsMember(id) {
			continue
		}
		if id == c.cfg.LocalID {
			if voters <= 1 {
				continue // the last voter stays: the mesh would have no quorum
			}
			if err := waitFuture(ctx, c.raft.LeadershipTransfer()); err != nil {
				return true, fmt.Errorf("hand over leadership before leaving: %w", err)
			}
			return true, nil
		}
		timeout := attemptTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		if err := waitFuture(ctx, c.raft.RemoveServer(s.ID, 0, timeout)); err != nil {
			return true, fmt.Errorf("remove %s from the configuration: %w", shortID(id), err)
		}
		c.removals.Add(1)
		c.log.Info("removed a departed member from the configuration", "node", id)
		return true, nil
	}
	return false, nil
}

// waitFuture waits for f or ctx.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	// Raft does not resolve every future by its shutdown: a committed
	// entry handed to its FSM goroutine as that stops is never answered
	// (a voter promotion's future held a test's Close for eight minutes).
	// A waiter that leaves on ctx leaves this goroutine behind, never
	// the loop that asked.
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrRaftShutdown) {
			return ErrClosed
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// membershipCounters are reported by Stats.
type membershipCounters struct {
	promotions, demotions, removals atomic.Uint64
	edgePromotions                  atomic.Uint64 // edges made standbys (servers.go)
}
