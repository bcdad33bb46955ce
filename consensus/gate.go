package consensus

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/meshward/meshward/internal/refusal"
)

// The transport boundary of raft (DESIGN rule 3): hashicorp/raft does not
// ask who sends an RPC, so the stream layer does, once per stream (raft
// pools its connections and sends many RPCs on each). A stream is accepted
// only from a server of the current raft configuration. A node in no
// configuration yet (it is joining) accepts only the peers its join code
// named (allowJoinPeer). When the configuration changes, the streams of
// peers that left it are reset.
//
// The gate never asks raft on the stream's path: it reads a set from
// raft.GetConfiguration (the latest configuration, committed or not,
// which is what raft itself obeys) whenever that may have changed: a
// configuration entry stored in the log, a range of the log deleted, a
// snapshot restored (the log cache and restoreNotifier ask for it). A
// miss asks too, and every Config.GateRefreshInterval (gateRefresh) it
// is read anyway, as a safety net. A server added a moment ago may see
// its first stream refused; raft retries with backoff. The
// configuration read is also what the parts
// that follow it (the servers' topic subscription, an edge watching for
// its promotion) look at, woken by configChanged, instead of each asking
// raft every fraction of a second: on a mesh of a thousand nodes those
// polls were a large part of what every idle edge cost.

// Reasons the raft stream layer refuses a stream, the reason label of
// meshward_transport_refused_total{protocol="/meshward/raft/1"}.
const (
	// RefusedNotInConfiguration: the peer is not a server of the raft
	// configuration.
	RefusedNotInConfiguration = "not_in_configuration"
	// RefusedNotJoinPeer: this node is in no configuration yet and the
	// peer is not one it joins through.
	RefusedNotJoinPeer = "not_join_peer"
	// RefusedStarting: raft has not started here yet, so no
	// configuration is known.
	RefusedStarting = "starting"
	// RefusedLeftConfiguration: the peer's open stream was reset because
	// it is no longer a server of the configuration.
	RefusedLeftConfiguration = "left_configuration"
)

const (
	gateRefresh  = 5 * time.Second
	maxJoinPeers = 16
)

// raftGate decides which peers may open raft streams.
type raftGate struct {
	refused *refusal.Counter

	// servers is the configuration last read: nil until raft runs.
	servers atomic.Pointer[map[peer.ID]bool]
	// conf is that configuration as raft gave it.
	conf atomic.Pointer[raft.Configuration]
	kick chan struct{} // asks the refresh loop for an early read

	// changedMu guards changed, closed (and replaced) when a read found
	// a configuration other than the one before.
	changedMu sync.Mutex
	changed   chan struct{}

	mu        sync.Mutex
	joinPeers map[peer.ID]bool
	// joinGated is set by the first allowJoinPeer: from then on, a node in
	// no configuration accepts only its join peers. Until the join code
	// names any, a joining node accepts every peer, as raft would.
	joinGated bool
}

func newRaftGate(refused *refusal.Counter) *raftGate {
	return &raftGate{refused: refused, kick: make(chan struct{}, 1), joinPeers: make(map[peer.ID]bool), changed: make(chan struct{})}
}

// admit returns "" when p may open a raft stream, else the reason.
func (g *raftGate) admit(p peer.ID) string {
	set := g.servers.Load()
	if set == nil {
		return RefusedStarting
	}
	if (*set)[p] {
		return ""
	}
	if len(*set) == 0 {
		g.mu.Lock()
		ok := !g.joinGated || g.joinPeers[p]
		g.mu.Unlock()
		if ok {
			return ""
		}
		g.refreshSoon()
		return RefusedNotJoinPeer
	}
	g.refreshSoon()
	return RefusedNotInConfiguration
}

// allowed reports whether p may keep its raft streams under set.
func (g *raftGate) allowed(set map[peer.ID]bool, p peer.ID) bool {
	if set[p] {
		return true
	}
	if len(set) > 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.joinGated || g.joinPeers[p]
}

func (g *raftGate) refreshSoon() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// allowJoin lets p open raft streams while this node is in no
// configuration; at most maxJoinPeers are kept (the latest named win).
func (g *raftGate) allowJoin(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.joinGated = true
	if len(g.joinPeers) >= maxJoinPeers && !g.joinPeers[p] {
		for q := range g.joinPeers {
			delete(g.joinPeers, q)
			break
		}
	}
	g.joinPeers[p] = true
}

// set stores the servers of conf, and wakes those waiting on
// changedCh when conf differs from the configuration before.
func (g *raftGate) set(conf raft.Configuration) map[peer.ID]bool {
	set := make(map[peer.ID]bool, len(conf.Servers))
	for _, s := range conf.Servers {
		if id, err := peer.Decode(string(s.ID)); err == nil {
			set[id] = true
		}
	}
	g.servers.Store(&set)
	conf = conf.Clone()
	if old := g.conf.Swap(&conf); old == nil || !slices.Equal(old.Servers, conf.Servers) {
		g.bump()
	}
	return set
}

// bump wakes those waiting on changedCh.
func (g *raftGate) bump() {
	g.changedMu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.changedMu.Unlock()
}

// changedCh is closed when the configuration read next differs from
// the one read last.
func (g *raftGate) changedCh() <-chan struct{} {
	g.changedMu.Lock()
	defer g.changedMu.Unlock()
	return g.changed
}

// configuration is the configuration last read, and false before raft
// ran.
func (g *raftGate) configuration() (raft.Configuration, bool) {
	c := g.conf.Load()
	if c == nil {
		return raft.Configuration{}, false
	}
	return *c, true
}

// inConfiguration reports whether p is a server of the configuration last
// read.
func (g *raftGate) inConfiguration(p peer.ID) bool {
	set := g.servers.Load()
	return set != nil && (*set)[p]
}

// refreshGate reads raft's configuration into the gate and resets the
// raft streams of peers that are no longer allowed.
func (c *Consensus) refreshGate() {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return // shutting down
	}
	set := c.gate.set(f.Configuration())
	c.layer.resetInbound(func(p peer.ID) bool { return c.gate.allowed(set, p) })
}

// gateLoop refreshes the gate when asked (a change of the configuration,
// a miss) and every GateRefreshInterval.
func (c *Consensus) gateLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.GateRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.gate.kick:
		}
		c.refreshGate()
	}
}

// restoreNotifier is the FSM raft is given: the fsm, with after called
// once a snapshot was restored (raft's configuration came with it).
type restoreNotifier struct {
	*fsm
	after func()
}

func (r restoreNotifier) Restore(rc io.ReadCloser) error {
	defer r.after()
	return r.fsm.Restore(rc)
}

// configChanged is closed when raft's configuration, as the gate reads
// it, changed; the caller then asks for configChanged again.
func (c *Consensus) configChanged() <-chan struct{} { return c.gate.changedCh() }

// knownServer reports whether id is a server (voter or standby) of raft's
// configuration as last read by the gate, which follows raft's within
// moments of a change (gate.go); false before raft ran.
func (c *Consensus) knownServer(id string) bool {
	conf, ok := c.gate.configuration()
	if !ok {
		return false
	}
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// allowJoinPeer lets p open raft streams to this node while it is in no
// raft configuration yet. The join code calls it for the member it joins
// through and for the servers that member names (the leader that admits
// this node replicates to it before this node knows the configuration).
// Once this node is in a configuration, only its servers are accepted.
func (c *Consensus) allowJoinPeer(p peer.ID) { c.gate.allowJoin(p) }

// InConfiguration reports whether p is a server (voter or not) of the raft
// configuration as last read (at most a fraction of a second old).
func (c *Consensus) InConfiguration(p peer.ID) bool { return c.gate.inConfiguration(p) }

// TransportRefusals counts what this participant's protocols refused, by
// protocol and reason; the node exports it with the other parts'.
func (c *Consensus) TransportRefusals() *refusal.Counter { return c.gate.refused }

// refuseStream counts a refusal on one of this participant's protocols
// (for the raft-rpc protocol: a stranger's request other than a first-hand
// join is refused as RefusedNotMember).
func (c *Consensus) refuseStream(proto protocol.ID, reason string, p peer.ID, err error) {
	c.gate.refused.Refuse(string(proto), reason, p, err)
}

// RefusedNotMember: a request on the raft-rpc protocol from a peer that is
// neither on the roster nor in the configuration.
const RefusedNotMember = "not_member"
