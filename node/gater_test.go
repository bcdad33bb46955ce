package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/conngater"

	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/internal/refusal"
)

// fakeRoster is a roster a test sets.
type fakeRoster struct {
	mu      sync.Mutex
	members map[peer.ID]bool
}

func (r *fakeRoster) IsMember(id string) bool {
	p, err := peer.Decode(id)
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[p]
}

func (r *fakeRoster) InConfiguration(peer.ID) bool { return false }

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func gaterHost(t *testing.T, g *meshGater) host.Host {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gossip.HostConfig{Key: sk, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}}
	if g != nil {
		cfg.ConnectionGater = g
	}
	h, err := gossip.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func dial(from, to host.Host) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}) // refusals show in Connectedness
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGaterStrangerGrace: a stranger connects to an admitted node within
// its grace; after it, its connection is closed and a new one refused
// until the ban ends, each counted; a member stays connected throughout,
// and a gater handed in by the caller is obeyed as well.
func TestGaterStrangerGrace(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	inner, err := conngater.NewBasicConnectionGater(nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := refusal.New(nil)
	g := newMeshGater(inner, gossip.Config{StrangerGrace: 30 * time.Second, StrangerBan: 10 * time.Minute}, clock.now, refused)
	a := gaterHost(t, g)
	member, stranger, other := gaterHost(t, nil), gaterHost(t, nil), gaterHost(t, nil)
	roster := &fakeRoster{members: map[peer.ID]bool{a.ID(): true, member.ID(): true, other.ID(): true}}
	g.attach(a, roster)
	connected := func(p host.Host) bool { return a.Network().Connectedness(p.ID()) == network.Connected }

	dial(stranger, a)
	dial(member, a)
	waitCond(t, "the stranger and the member connected within the grace", func() bool { return connected(stranger) && connected(member) })

	clock.advance(31 * time.Second)
	g.sweep()
	waitCond(t, "the stranger disconnected after its grace, on both sides", func() bool {
		return !connected(stranger) && stranger.Network().Connectedness(a.ID()) != network.Connected
	})
	if n := refused.Count(connectionProtocol, RefusedGraceExpired); n != 1 {
		t.Fatalf("grace_expired counted %d times, want 1", n)
	}
	if !connected(member) {
		t.Fatal("the member was disconnected")
	}

	dial(stranger, a)
	waitCond(t, "the banned stranger's new connection refused", func() bool {
		return refused.Count(connectionProtocol, RefusedBanned) >= 1
	})
	if connected(stranger) {
		t.Fatal("a banned stranger is connected")
	}

	clock.advance(11 * time.Minute)
	dial(stranger, a)
	waitCond(t, "the stranger connected again after its ban", func() bool { return connected(stranger) })

	// The caller's gater refuses a member: both gaters must allow.
	inner.BlockPeer(other.ID())
	dial(other, a)
	if connected(other) {
		t.Fatal("a member the caller's gater blocks is connected")
	}
}

// TestGaterRefusesNobodyWhileJoining: a node that is not admitted itself
// is joining, and everyone is a stranger to it: it closes no connection.
func TestGaterRefusesNobodyWhileJoining(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	refused := refusal.New(nil)
	g := newMeshGater(nil, gossip.Config{StrangerGrace: time.Second, StrangerBan: time.Hour}, clock.now, refused)
	joiner := gaterHost(t, g)
	member := gaterHost(t, nil)
	g.attach(joiner, &fakeRoster{})
	dial(member, joiner)
	waitCond(t, "the member connected", func() bool { return joiner.Network().Connectedness(member.ID()) == network.Connected })
	clock.advance(time.Hour)
	g.sweep()
	dial(member, joiner)
	if joiner.Network().Connectedness(member.ID()) != network.Connected || len(refused.Snapshot()) != 0 {
		t.Fatalf("a joining node refused %v", refused.Snapshot())
	}
}

// versionedRoster is a fakeRoster that counts its changes, as the
// consensus roster does.
type versionedRoster struct {
	fakeRoster
	version atomic.Uint64
}

func (r *versionedRoster) RosterVersion() uint64 { return r.version.Load() }

func (r *versionedRoster) remove(p peer.ID) {
	r.mu.Lock()
	delete(r.members, p)
	r.mu.Unlock()
	r.version.Add(1)
}

// TestGaterSweepsRemovedMember: the sweeper, which looks at every peer
// only when the roster changed or a stranger is known, still finds a
// member removed from the roster (its roster changed): the peer is a
// stranger from then on, and its connection is closed once its grace
// ran out, counted.
func TestGaterSweepsRemovedMember(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	refused := refusal.New(nil)
	g := newMeshGater(nil, gossip.Config{StrangerGrace: 30 * time.Second, StrangerBan: 10 * time.Minute}, clock.now, refused)
	a := gaterHost(t, g)
	member := gaterHost(t, nil)
	roster := &versionedRoster{fakeRoster: fakeRoster{members: map[peer.ID]bool{a.ID(): true, member.ID(): true}}}
	g.attach(a, roster)
	connected := func() bool { return a.Network().Connectedness(member.ID()) == network.Connected }
	dial(member, a)
	waitCond(t, "the member connected", connected)
	g.sweep() // looks at everyone once: nothing to do
	clock.advance(time.Second)
	g.sweep() // nothing changed: looks at no one

	roster.remove(member.ID())
	g.sweep() // the roster changed: the former member is a stranger from now
	clock.advance(31 * time.Second)
	g.sweep() // a stranger is known: its grace ran out
	waitCond(t, "the removed member disconnected after its grace", func() bool { return !connected() })
	if n := refused.Count(connectionProtocol, RefusedGraceExpired); n != 1 {
		t.Fatalf("grace_expired counted %d times, want 1", n)
	}
}
