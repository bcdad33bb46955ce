package gossip

import (
	"testing"
	"time"

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
