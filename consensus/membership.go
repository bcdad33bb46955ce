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
	Leader   bool     `json:"leader"`
	Health   Health   `json:"health"`
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
		select {
		case <-ctx.Done():
			return
		case o := <-c.observations:
			c.health.observe(o, time.Now())
		case <-tick.C:
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
	now := time.Now()
	stale := c.staleFailure()
	var voters, dead []raft.Server
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
		if err := c.raft.DemoteVoter(d.ID, 0, timeout).Error(); err != nil {
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
		if err := c.raft.AddVoter(p.ID, p.Address, 0, timeout).Error(); err != nil {
			return fmt.Errorf("promote %s: %w", shortID(string(p.ID)), err)
		}
		c.promotions.Add(1)
		c.log.Info("promoted a non-voter", "node", p.ID, "voters", n+1)
		return c.syncRosterVoter(ctx, string(p.ID), true)
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
	if err := c.applyLocal(ctx, c.admitCommand(id, m.Site, voter, m.Addrs)); err != nil {
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
	if f := c.raft.GetConfiguration(); f.Error() == nil {
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

// RemoveMember removes a node from the mesh: from the raft configuration
// and from the roster (after which gossip refuses its envelopes). It may
// be called on any node; the request goes to the leader, and is retried
// across leader changes until ctx ends. Removing the leader makes it hand
// leadership to another voter first. Removing a node that is not a member
// succeeds. A removed node that is still running stops taking part in
// raft; to come back it must join again.
func (c *Consensus) RemoveMember(ctx context.Context, id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("remove member: %w: id of 1 to %d bytes required", ErrInvalidCommand, maxIDLen)
	}
	if err := c.retry(ctx, func(ctx context.Context) error { return c.removeOnce(ctx, id, 0) }); err != nil {
		return fmt.Errorf("remove member %s: %w", shortID(id), err)
	}
	return nil
}

// Leave removes this node from the mesh, for a graceful shutdown: if it
// leads it hands leadership over first. Call Close afterwards.
func (c *Consensus) Leave(ctx context.Context) error {
	if !c.inConfig() && !c.IsMember(c.cfg.LocalID) {
		return nil
	}
	if err := c.RemoveMember(ctx, c.cfg.LocalID); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	c.log.Info("left the mesh")
	return nil
}

// removeOnce removes id if we lead, or forwards the request to the leader.
func (c *Consensus) removeOnce(ctx context.Context, id string, hops int) error {
	if c.raft.State() != raft.Leader {
		leader, err := c.leaderPeer()
		if err != nil {
			return err
		}
		if hops >= maxHops {
			return fmt.Errorf("%w: %d", ErrTooManyHops, hops)
		}
		_, err = c.callResp(ctx, leader, &rpcRequest{Kind: rpcRemove, Hops: hops + 1, Node: id})
		return err
	}
	cf := c.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	present, voters := false, 0
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		present = present || string(s.ID) == id
	}
	if id == c.cfg.LocalID {
		if voters <= 1 {
			return ErrLastVoter
		}
		// A leader that removes itself steps down mid-change; hand over
		// first and let the next attempt go to the new leader.
		if err := waitFuture(ctx, c.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("hand over leadership before leaving: %w", err)
		}
		return fmt.Errorf("%w: leadership handed over, retrying through the new leader", ErrNoLeader)
	}
	if present {
		timeout := attemptTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		if err := waitFuture(ctx, c.raft.RemoveServer(raft.ServerID(id), 0, timeout)); err != nil {
			return fmt.Errorf("remove %s from the configuration: %w", shortID(id), err)
		}
		c.removals.Add(1)
		c.log.Info("removed from the configuration", "node", id)
	}
	if _, ok := c.fsm.member(id); !ok {
		return nil
	}
	cmd := Command{Type: CmdRemoveMember, At: time.Now().UTC(), Member: &Member{ID: id}}
	b, err := cmd.Encode()
	if err != nil {
		return err
	}
	return c.applyLocal(ctx, b)
}

// waitFuture waits for f or ctx.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // raft resolves every future, at the latest on shutdown
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
}
