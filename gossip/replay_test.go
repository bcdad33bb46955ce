package gossip

import (
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newReplayCache(3)
	key := func(i int) replayID { return replayKey(make([]byte, 32), uint64(i)) }

	if !c.reserve(key(1), t0.Add(time.Minute), t0) {
		t.Fatal("first reserve refused")
	}
	if c.reserve(key(1), t0.Add(time.Minute), t0.Add(time.Second)) {
		t.Fatal("replay inside the window accepted as new")
	}
	if !c.reserve(key(1), t0.Add(3*time.Minute), t0.Add(2*time.Minute)) {
		t.Fatal("expired entry still counted as seen")
	}
	// Release lets a key in again.
	c.reserve(key(2), t0.Add(time.Hour), t0)
	c.release(key(2))
	if !c.reserve(key(2), t0.Add(time.Hour), t0) {
		t.Fatal("released key refused")
	}
	// Capacity: the oldest insertion is forgotten first, and the stale ring
	// slot of a released key never evicts its newer entry.
	now := t0.Add(2 * time.Minute)
	for i := 3; i <= 10; i++ {
		if !c.reserve(key(i), t0.Add(time.Hour), now) {
			t.Fatalf("key %d refused", i)
		}
		if n := c.len(); n > 3 {
			t.Fatalf("cache holds %d entries, capacity 3", n)
		}
	}
	for i := 8; i <= 10; i++ {
		if c.reserve(key(i), t0.Add(time.Hour), now) {
			t.Fatalf("recent key %d forgotten", i)
		}
	}
	if !c.reserve(key(3), t0.Add(time.Hour), now) {
		t.Fatal("oldest key was not evicted")
	}
}

func TestReplayCacheReleasedSlot(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newReplayCache(4)
	k := replayKey(make([]byte, 32), 1)
	c.reserve(k, t0.Add(time.Hour), t0)
	c.release(k)
	c.reserve(replayKey(make([]byte, 32), 2), t0.Add(time.Hour), t0)
	c.reserve(k, t0.Add(time.Hour), t0) // re-reserved: a second ring slot
	// Fill until the first (dead) slot of k is popped: k must survive.
	c.reserve(replayKey(make([]byte, 32), 3), t0.Add(time.Hour), t0)
	c.reserve(replayKey(make([]byte, 32), 4), t0.Add(time.Hour), t0)
	if c.reserve(k, t0.Add(time.Hour), t0) {
		t.Fatal("popping a dead slot evicted the key's live entry")
	}
}

// The ring starts empty and doubles as entries arrive, keeping their
// order across each growth, up to the capacity.
func TestReplayCacheGrows(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	const capacity = 5000
	c := newReplayCache(capacity)
	if len(c.ring) != 0 {
		t.Fatalf("a new cache holds a ring of %d slots", len(c.ring))
	}
	key := func(i int) replayID { return replayKey(make([]byte, 32), uint64(i)) }
	for i := range 3000 {
		c.reserve(key(i), t0.Add(time.Hour), t0)
	}
	if len(c.ring) != 4096 {
		t.Fatalf("ring of %d slots after 3000 entries, want 4096", len(c.ring))
	}
	for i := range 3000 {
		if c.reserve(key(i), t0.Add(time.Hour), t0) {
			t.Fatalf("key %d forgotten while the ring grew", i)
		}
	}
	for i := 3000; i < capacity+1000; i++ {
		c.reserve(key(i), t0.Add(time.Hour), t0)
	}
	if len(c.ring) != capacity || c.len() != capacity {
		t.Fatalf("ring %d, entries %d; want both at the capacity %d", len(c.ring), c.len(), capacity)
	}
	// The first 1000 went first, in order; the rest are held.
	if !c.reserve(key(999), t0.Add(time.Hour), t0) || c.reserve(key(capacity+999), t0.Add(time.Hour), t0) {
		t.Fatal("eviction out of insertion order after growth")
	}
}

// A ring that grows after its front moved (expired entries popped) keeps
// every live entry.
func TestReplayCacheGrowsAfterPops(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := newReplayCache(4096)
	key := func(i int) replayID { return replayKey(make([]byte, 32), uint64(i)) }
	for i := range 100 {
		c.reserve(key(i), t0.Add(time.Second), t0) // short-lived
	}
	for i := 100; i < 1024; i++ {
		c.reserve(key(i), t0.Add(time.Hour), t0)
	}
	later := t0.Add(time.Minute) // the first 100 have expired
	for i := 1024; i < 1500; i++ {
		c.reserve(key(i), t0.Add(time.Hour), later)
	}
	if c.head == 0 && len(c.ring) == 1024 {
		t.Fatal("the test did not move the front before growing")
	}
	for i := 100; i < 1500; i++ {
		if c.reserve(key(i), t0.Add(time.Hour), later) {
			t.Fatalf("live key %d lost when the ring grew", i)
		}
	}
	// Fill to the capacity and one more: the oldest live entry (100) goes
	// first, not one written after the ring wrapped (1100).
	for i := 1500; i < 100+4096+1; i++ {
		c.reserve(key(i), t0.Add(time.Hour), later)
	}
	if c.reserve(key(1100), t0.Add(time.Hour), later) {
		t.Fatal("an entry written after the ring wrapped was evicted before older ones")
	}
	if !c.reserve(key(100), t0.Add(time.Hour), later) {
		t.Fatal("the oldest entry was not the one evicted")
	}
}
