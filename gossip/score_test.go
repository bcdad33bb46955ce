package gossip

import (
	"math"
	"reflect"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPeerLimiterBounded: the limiter never tracks more peers than its
// bound, and when full it evicts an idle peer (bucket full again, no
// penalty) before the least recently used one, so that a peer it throttles
// keeps its bucket and its penalty.
func TestPeerLimiterBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	busy, idle, fresh := peer.ID("busy"), peer.ID("idle"), peer.ID("fresh")
	// Map order is random: repeat so that a wrong pick cannot pass by luck.
	for range 20 {
		l := newPeerLimiter(1, 10, 2) // 1 token/s, burst 10, two peers
		for range 10 {
			l.allow(busy, t0) // empties busy's bucket: 10 s to refill
		}
		l.allow(busy, t0)
		l.allow(busy, t0) // two refusals: a penalty of 2
		l.allow(idle, t0.Add(time.Second))
		// Both buckets are full again; only idle is without penalty.
		if !l.allow(fresh, t0.Add(11*time.Second)) {
			t.Fatal("a new peer was refused")
		}
		l.mu.Lock()
		_, busyKept := l.buckets[busy]
		_, idleKept := l.buckets[idle]
		l.mu.Unlock()
		if !busyKept || idleKept {
			t.Fatalf("refilled buckets: evicted the wrong peer: penalised kept %v, idle kept %v", busyKept, idleKept)
		}
	}

	l := newPeerLimiter(1, 10, 2)
	for range 10 {
		l.allow(busy, t0) // empties busy's bucket: 10 s to refill
	}
	if l.allow(busy, t0) {
		t.Fatal("an empty bucket gave a token")
	}
	l.allow(idle, t0.Add(time.Second)) // used later, full again 1 s after
	now := t0.Add(3 * time.Second)
	if !l.allow(fresh, now) {
		t.Fatal("a new peer was refused")
	}
	if n := l.len(); n != 2 {
		t.Fatalf("limiter tracks %d peers, bound 2", n)
	}
	l.mu.Lock()
	b, busyKept := l.buckets[busy]
	_, idleKept := l.buckets[idle]
	l.mu.Unlock()
	if !busyKept || idleKept {
		t.Fatalf("evicted the wrong peer: busy kept %v, idle kept %v", busyKept, idleKept)
	}
	if b.penalty <= 0 {
		t.Fatal("the throttled peer lost its penalty")
	}
	// Many peers, one message each: the map stays within its bound.
	for i := range 100 {
		l.allow(peer.ID(rune('a'+i%26))+peer.ID(rune('0'+i/26)), now)
	}
	if n := l.len(); n != 2 {
		t.Fatalf("limiter tracks %d peers after a hundred, bound 2", n)
	}
}

// TestScoreDecayKeepsHalfLives: whatever the decay interval, each
// counter decays to GossipSub's zero (1%) over the same time: a
// forgery is remembered for an hour, a behaviour penalty and first
// deliveries for ten minutes.
func TestScoreDecayKeepsHalfLives(t *testing.T) {
	for _, interval := range []time.Duration{0, time.Second, 5 * time.Second} {
		p, _ := scoreParams(func(peer.ID) float64 { return 0 }, interval, DefaultTopic)
		want := max(interval, time.Second)
		if p.DecayInterval != want {
			t.Fatalf("decay interval %s, want %s", p.DecayInterval, want)
		}
		left := func(factor float64, over time.Duration) float64 {
			return math.Pow(factor, float64(over/p.DecayInterval))
		}
		tp := p.Topics[DefaultTopic]
		for _, c := range []struct {
			name   string
			factor float64
			over   time.Duration
		}{
			{"behaviour penalty", p.BehaviourPenaltyDecay, 10 * time.Minute},
			{"first deliveries", tp.FirstMessageDeliveriesDecay, 10 * time.Minute},
			{"invalid deliveries", tp.InvalidMessageDeliveriesDecay, time.Hour},
		} {
			if got := left(c.factor, c.over); math.Abs(got-p.DecayToZero) > 1e-9 {
				t.Errorf("decay every %s: %s keeps %.4f after %s, want %.2f", p.DecayInterval, c.name, got, c.over, p.DecayToZero)
			}
			if got := left(c.factor, c.over/2); got < 0.05 || got > 0.15 {
				t.Errorf("decay every %s: %s keeps %.4f after half of %s, want 0.1", p.DecayInterval, c.name, got, c.over)
			}
		}
	}
}

// TestGossipSubParams: a slower heartbeat keeps opportunistic grafting a
// minute apart (and direct peers' reconnection five), and leaves the
// rest of GossipSub's parameters as they are.
func TestGossipSubParams(t *testing.T) {
	def := pubsub.DefaultGossipSubParams()
	if got := gossipSubParams(def.HeartbeatInterval); !reflect.DeepEqual(got, def) {
		t.Fatalf("at GossipSub's own heartbeat the parameters differ: %+v, want %+v", got, def)
	}
	p := gossipSubParams(4 * time.Second)
	if p.HeartbeatInterval != 4*time.Second || p.OpportunisticGraftTicks != 15 || p.DirectConnectTicks != 75 {
		t.Fatalf("heartbeat %s, opportunistic graft every %d, direct connect every %d: want 4s, 15, 75",
			p.HeartbeatInterval, p.OpportunisticGraftTicks, p.DirectConnectTicks)
	}
	p.HeartbeatInterval, p.OpportunisticGraftTicks, p.DirectConnectTicks = def.HeartbeatInterval, def.OpportunisticGraftTicks, def.DirectConnectTicks
	if !reflect.DeepEqual(p, def) {
		t.Fatalf("other parameters changed: %+v, want %+v", p, def)
	}
	if got := gossipSubParams(time.Hour).OpportunisticGraftTicks; got != 1 {
		t.Fatalf("opportunistic graft every %d heartbeats of an hour, want 1", got)
	}
}

// TestRouterParams: every node's GossipSub sends IDONTWANT only from
// idontwantThreshold, and keeps the rest of its parameters at its
// heartbeat's; a node starts with them.
func TestRouterParams(t *testing.T) {
	def := pubsub.DefaultGossipSubParams()
	p := routerParams(Options{})
	if p.IDontWantMessageThreshold != idontwantThreshold || idontwantThreshold <= def.IDontWantMessageThreshold {
		t.Fatalf("IDONTWANT from %d bytes, want %d (above GossipSub's %d)", p.IDontWantMessageThreshold, idontwantThreshold, def.IDontWantMessageThreshold)
	}
	p.IDontWantMessageThreshold = def.IDontWantMessageThreshold
	if !reflect.DeepEqual(p, def) {
		t.Fatalf("other parameters changed: %+v, want %+v", p, def)
	}
	p = routerParams(Options{RouterHeartbeat: 4 * time.Second})
	if p.HeartbeatInterval != 4*time.Second || p.OpportunisticGraftTicks != 15 || p.IDontWantMessageThreshold != idontwantThreshold {
		t.Fatalf("heartbeat %s, opportunistic graft every %d, IDONTWANT from %d: want 4s, 15, %d", p.HeartbeatInterval, p.OpportunisticGraftTicks, p.IDontWantMessageThreshold, idontwantThreshold)
	}
	if n := startMeshNode(t, nil, newMemLog(), Options{RouterHeartbeat: 4 * time.Second}); n.g == nil {
		t.Fatal("no node")
	}
}
