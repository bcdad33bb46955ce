package gossip

import (
	"encoding/binary"
	"sync"
	"time"
)

// replayCache remembers (origin, seq) pairs of accepted envelopes until the
// envelope would be stale anyway, so a replay inside the freshness window is
// caught here and one outside it by the freshness check. It holds at most
// capacity entries; when full it forgets the oldest insertions first, and
// the Handler's own idempotence is the backstop.
type replayCache struct {
	mu       sync.Mutex
	capacity int
	gen      uint64
	entries  map[replayID]replayEntry
	// ring is the insertion order; it grows by doubling up to capacity,
	// so that an idle node does not hold a full ring.
	ring    []replaySlot
	head, n int
}

type replayEntry struct {
	expires time.Time
	gen     uint64 // the ring slot that owns this entry
}

type replaySlot struct {
	key replayID
	gen uint64
}

// replayID is an envelope's origin key and sequence number.
type replayID [40]byte

func newReplayCache(capacity int) *replayCache {
	return &replayCache{
		capacity: capacity,
		entries:  make(map[replayID]replayEntry, min(capacity, 1024)),
	}
}

// grow doubles the ring (at least replayRingMin slots, at most capacity),
// keeping the insertion order from the front.
func (c *replayCache) grow() {
	ring := make([]replaySlot, min(max(2*len(c.ring), replayRingMin), c.capacity))
	for i := range c.n {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
}

// replayRingMin is the ring's first size.
const replayRingMin = 1024

func replayKey(origin []byte, seq uint64) replayID {
	var b replayID
	copy(b[:32], origin)
	binary.BigEndian.PutUint64(b[32:], seq)
	return b
}

// reserve records key until expires and reports whether it was new. An
// entry whose expiry has passed counts as new.
func (c *replayCache) reserve(key replayID, expires, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && now.Before(e.expires) {
		return false
	}
	// Pop the front slot while the ring is full or the front is dead
	// (released, superseded or expired).
	for c.n > 0 {
		s := c.ring[c.head]
		e, ok := c.entries[s.key]
		live := ok && e.gen == s.gen && now.Before(e.expires)
		if live && c.n < c.capacity {
			break
		}
		if ok && e.gen == s.gen {
			delete(c.entries, s.key)
		}
		c.ring[c.head] = replaySlot{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
	}
	if c.n == len(c.ring) {
		c.grow() // n < capacity here: a full ring of capacity popped its front
	}
	c.gen++
	c.ring[(c.head+c.n)%len(c.ring)] = replaySlot{key: key, gen: c.gen}
	c.n++
	c.entries[key] = replayEntry{expires: expires, gen: c.gen}
	return true
}

// release forgets key, so that an envelope whose handling failed can be
// accepted when it arrives again. Its ring slot is reclaimed when it
// reaches the front.
func (c *replayCache) release(key replayID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
