package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/internal/refusal"
	"github.com/meshward/meshward/internal/routine"
)

// The mesh's connection gater (DESIGN rule 3). Members (on the roster or
// servers of the raft configuration) connect freely. A stranger may connect
// to an admitted node for a grace period counted from its first inbound
// connection, long enough to join; after it, its inbound connections are
// closed and new ones refused for the ban period. Connections this node
// dials are never refused by the gater (it chose the peer: bootstrap and
// join peers, its peer book), and a node that is not admitted itself
// (it is joining, so everyone is a stranger to it) refuses nobody. A gater
// handed in by the caller (a testnet partition) is consulted first: both
// must allow.

// Reasons the gater refuses, the reason label of
// meshward_transport_refused_total{protocol="connection"}.
const (
	// RefusedGraceExpired: a stranger's inbound connections were closed,
	// or a new one refused, because its grace has run out.
	RefusedGraceExpired = "grace_expired"
	// RefusedBanned: a stranger whose grace ran out tried again during
	// its ban.
	RefusedBanned = "banned"
)

// connectionProtocol is the protocol label of the gater's refusals.
const connectionProtocol = "connection"

// maxStrangers bounds the strangers the gater remembers; beyond it the one
// seen first is forgotten.
const maxStrangers = 4096

// gaterRoster is what the gater asks consensus.
type gaterRoster interface {
	IsMember(nodeID string) bool
	InConfiguration(p peer.ID) bool
}

// meshGater is the node's connection gater. It is built before the host
// and starts gating once start hands it the host and the roster.
type meshGater struct {
	inner      connmgr.ConnectionGater // nil admits all
	grace, ban time.Duration
	now        func() time.Time
	refused    *refusal.Counter

	self   peer.ID
	roster atomic.Pointer[gaterRoster] // nil until start
	h      host.Host
	group  *routine.Group

	mu        sync.Mutex
	strangers map[peer.ID]*strangerState

	// The sweeper's own: the roster version it last looked at all peers
	// under, and when.
	sweptVersion uint64
	sweptAt      time.Time
}

// rosterVersioner is a roster that counts its changes
// (consensus.Consensus.RosterVersion).
type rosterVersioner interface{ RosterVersion() uint64 }

// sweepAllEvery is how often the sweeper looks at every connected peer
// even though no stranger is known and the roster did not change.
const sweepAllEvery = time.Minute

type strangerState struct {
	since       time.Time // first inbound connection
	bannedUntil time.Time // zero when not banned
}

var _ connmgr.ConnectionGater = (*meshGater)(nil)

func newMeshGater(inner connmgr.ConnectionGater, cfg gossip.Config, now func() time.Time, refused *refusal.Counter) *meshGater {
	g := &meshGater{
		inner: inner, grace: cfg.StrangerGrace, ban: cfg.StrangerBan, now: now, refused: refused,
		strangers: make(map[peer.ID]*strangerState),
	}
	if g.grace <= 0 {
		g.grace = gossip.DefaultStrangerGrace
	}
	if g.ban <= 0 {
		g.ban = gossip.DefaultStrangerBan
	}
	return g
}

// start gates h's connections by roster from now on, and closes the
// inbound connections of strangers whose grace ran out, until ctx ends or
// Close.
func (g *meshGater) start(ctx context.Context, h host.Host, roster gaterRoster) {
	g.attach(h, roster)
	g.group = routine.New(ctx)
	tick := min(max(g.grace/4, 50*time.Millisecond), 5*time.Second)
	g.group.Go(func(ctx context.Context) {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.sweep()
			}
		}
	})
}

// attach gates h's connections by roster from now on.
func (g *meshGater) attach(h host.Host, roster gaterRoster) {
	g.h, g.self = h, h.ID()
	g.roster.Store(&roster)
}

// Close stops the sweeper and waits for it. It is idempotent.
func (g *meshGater) Close() error {
	if g.group != nil {
		g.group.Close()
	}
	return nil
}

// admitted reports whether p may connect freely: always while the gater
// has no roster or this node is not admitted itself.
func (g *meshGater) admitted(p peer.ID) bool {
	rp := g.roster.Load()
	if rp == nil {
		return true
	}
	r := *rp
	if !r.IsMember(g.self.String()) {
		return true // joining: everyone is a stranger to us
	}
	return r.IsMember(p.String()) || r.InConfiguration(p)
}

// inbound decides on an inbound connection from p: "" or the reason.
func (g *meshGater) inbound(p peer.ID) string {
	if g.admitted(p) {
		g.forget(p)
		return ""
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.stranger(p, now)
	switch {
	case now.Before(st.bannedUntil):
		return RefusedBanned
	case !st.bannedUntil.IsZero():
		*st = strangerState{since: now} // the ban is over: a new grace
	case now.Sub(st.since) > g.grace:
		st.bannedUntil = now.Add(g.ban)
		return RefusedGraceExpired
	}
	return ""
}

// stranger returns p's state, creating it; g.mu is held.
func (g *meshGater) stranger(p peer.ID, now time.Time) *strangerState {
	if st, ok := g.strangers[p]; ok {
		return st
	}
	if len(g.strangers) >= maxStrangers {
		var oldest peer.ID
		for q, st := range g.strangers {
			if oldest == "" || st.since.Before(g.strangers[oldest].since) {
				oldest = q
			}
		}
		delete(g.strangers, oldest)
	}
	st := &strangerState{since: now}
	g.strangers[p] = st
	return st
}

func (g *meshGater) forget(p peer.ID) {
	g.mu.Lock()
	delete(g.strangers, p)
	g.mu.Unlock()
}

// sweep closes the inbound connections of strangers whose grace ran out
// (bans them) and forgets strangers long gone.
//
// It looks at every connected peer only when there is a reason to: a
// stranger known, the roster changed (a member removed is a stranger
// now), or sweepAllEvery passed; a server of a large mesh has hundreds
// of peers, and looking at each every few seconds was a twentieth of a
// resting mesh's CPU.
func (g *meshGater) sweep() {
	now := g.now()
	g.mu.Lock()
	pending := len(g.strangers) > 0
	g.mu.Unlock()
	all := pending || now.Sub(g.sweptAt) >= sweepAllEvery
	if rp := g.roster.Load(); rp != nil {
		if rv, ok := (*rp).(rosterVersioner); ok {
			if v := rv.RosterVersion(); v != g.sweptVersion {
				g.sweptVersion, all = v, true
			}
		} else {
			all = true
		}
	}
	if !all {
		return
	}
	g.sweptAt = now
	for _, p := range g.h.Network().Peers() {
		if p == g.self || g.admitted(p) {
			continue
		}
		var in []network.Conn
		for _, c := range g.h.Network().ConnsToPeer(p) {
			if c.Stat().Direction == network.DirInbound {
				in = append(in, c)
			}
		}
		if len(in) == 0 {
			continue
		}
		g.mu.Lock()
		st := g.stranger(p, now)
		expired := now.Before(st.bannedUntil) || (st.bannedUntil.IsZero() && now.Sub(st.since) > g.grace)
		if expired && st.bannedUntil.IsZero() {
			st.bannedUntil = now.Add(g.ban)
		}
		g.mu.Unlock()
		if !expired {
			continue
		}
		g.refused.Refuse(connectionProtocol, RefusedGraceExpired, p, nil)
		for _, c := range in {
			_ = c.Close()
		}
	}
	g.mu.Lock()
	for p, st := range g.strangers {
		if now.After(st.since.Add(g.grace+g.ban)) && !now.Before(st.bannedUntil) &&
			g.h.Network().Connectedness(p) != network.Connected {
			delete(g.strangers, p)
		}
	}
	g.mu.Unlock()
}

func (g *meshGater) InterceptPeerDial(p peer.ID) bool {
	return g.inner == nil || g.inner.InterceptPeerDial(p)
}

func (g *meshGater) InterceptAddrDial(p peer.ID, a multiaddr.Multiaddr) bool {
	return g.inner == nil || g.inner.InterceptAddrDial(p, a)
}

func (g *meshGater) InterceptAccept(a network.ConnMultiaddrs) bool {
	return g.inner == nil || g.inner.InterceptAccept(a)
}

func (g *meshGater) InterceptSecured(dir network.Direction, p peer.ID, a network.ConnMultiaddrs) bool {
	if g.inner != nil && !g.inner.InterceptSecured(dir, p, a) {
		return false
	}
	if dir != network.DirInbound {
		return true
	}
	if reason := g.inbound(p); reason != "" {
		g.refused.Refuse(connectionProtocol, reason, p, nil)
		return false
	}
	return true
}

func (g *meshGater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if g.inner != nil {
		return g.inner.InterceptUpgraded(c)
	}
	return true, 0
}
