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
