package consensus

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Bounds of the raft log cache: the last entries stored, which raft reads
// back to replicate them to followers and, on a follower, to apply them
// once committed. A few batches of MaxAppendEntries cover both; the byte
// bound keeps large entries (bulk operator commands, up to maxCommandSize)
// from pinning much memory.
const (
	logCacheEntries = 2 * maxAppendEntries
	logCacheBytes   = 4 << 20
)

// logCache keeps the most recently stored raft log entries in memory in
// front of the durable log store, so that replication and application
// read them without a transaction on the store. It holds one contiguous
// range of indexes, at most max entries and about maxBytes of entry data
// (one entry may exceed it alone); an entry is cached only once the store
// has stored it (and synced it: the store's durability is unchanged), and
// a deleted range leaves the cache with it.
type logCache struct {
	store    raft.LogStore
	max      int
	maxBytes int

	// onConfig, when set, is called after a configuration entry was
	// stored or a range deleted: raft's configuration may have changed
	// (the raft gate reads it again).
	onConfig func()

	mu     sync.RWMutex
	ring   []*raft.Log
	lo, hi uint64 // cached indexes lo..hi; empty when hi < lo
	bytes  int
}

var _ raft.LogStore = (*logCache)(nil)

func newLogCache(store raft.LogStore, entries, bytes int) *logCache {
	return &logCache{store: store, max: entries, maxBytes: bytes, ring: make([]*raft.Log, entries), lo: 1}
}

func logBytes(l *raft.Log) int { return len(l.Data) + len(l.Extensions) }

func (c *logCache) slot(index uint64) *(*raft.Log) { return &c.ring[index%uint64(len(c.ring))] }

// evictFirst drops the oldest cached entry. Caller holds mu for writing
// and the cache is not empty.
func (c *logCache) evictFirst() {
	s := c.slot(c.lo)
	c.bytes -= logBytes(*s)
	*s = nil
	c.lo++
}

// evictLast drops the newest cached entry. Caller holds mu for writing
// and the cache is not empty.
func (c *logCache) evictLast() {
	s := c.slot(c.hi)
	c.bytes -= logBytes(*s)
	*s = nil
	c.hi--
}

func (c *logCache) reset(next uint64) {
	clear(c.ring)
	c.lo, c.hi, c.bytes = next, next-1, 0
}

// GetLog implements raft.LogStore: from the cache when it holds index,
// else from the store.
func (c *logCache) GetLog(index uint64, log *raft.Log) error {
	c.mu.RLock()
	if index >= c.lo && index <= c.hi {
		*log = **c.slot(index)
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.store.GetLog(index, log)
}

// StoreLog implements raft.LogStore.
func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: the store stores the entries, and
// then the cache keeps them. Should the store fail, the cache forgets
// every entry from the first of the batch on, since the store may hold
// any prefix of it.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	err := c.store.StoreLogs(logs)
	if err == nil && c.onConfig != nil {
		for _, l := range logs {
			if l.Type == raft.LogConfiguration {
				defer c.onConfig()
				break
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.forgetFrom(logs[0].Index)
		return err
	}
	for _, l := range logs {
		if c.hi < c.lo || l.Index != c.hi+1 {
			// Not the next index: raft overwrote a suffix or skipped
			// ahead (a snapshot); start a new range.
			if l.Index <= c.hi && l.Index >= c.lo {
				c.forgetFrom(l.Index)
			}
			if c.hi < c.lo || l.Index != c.hi+1 {
				c.reset(l.Index)
			}
		}
		// Make room first: the new entry's slot is the oldest's when
		// the ring is full.
		for c.hi >= c.lo && c.hi-c.lo+1 >= uint64(c.max) {
			c.evictFirst()
		}
		c.hi = l.Index
		*c.slot(l.Index) = l
		c.bytes += logBytes(l)
		for c.bytes > c.maxBytes && c.lo < c.hi {
			c.evictFirst()
		}
	}
	return nil
}

// forgetFrom drops the cached entries from index on. Caller holds mu for
// writing.
func (c *logCache) forgetFrom(index uint64) {
	for c.hi >= c.lo && c.hi >= index {
		c.evictLast()
	}
}

// DeleteRange implements raft.LogStore: the cache drops the range too,
// whether or not the store succeeded.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	for c.hi >= c.lo && c.lo >= min && c.lo <= max {
		c.evictFirst()
	}
	for c.hi >= c.lo && c.hi >= min && c.hi <= max {
		c.evictLast()
	}
	if c.hi >= c.lo && min > c.lo && max < c.hi {
		// A hole inside the range: raft never makes one, but the cache
		// must not answer for it.
		c.reset(c.hi + 1)
	}
	c.mu.Unlock()
	if c.onConfig != nil {
		defer c.onConfig() // a configuration entry may have gone with it
	}
	if err := c.store.DeleteRange(min, max); err != nil {
		return fmt.Errorf("delete raft log range: %w", err)
	}
	return nil
}

// FirstIndex implements raft.LogStore (from the store).
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex implements raft.LogStore (from the store).
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }
