package intel

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// DefaultVerifyCacheSize is the number of verified envelopes a node
// remembers by default: about 2 MB, minutes of a large mesh's sightings.
const DefaultVerifyCacheSize = 16384

// verifyCacheShards spreads the cache over independent locks, so that the
// gossip validators and the FSM rarely wait for each other.
const verifyCacheShards = 16

// VerifyCache remembers which envelopes' signatures have verified, by the
// SHA-256 of their exact bytes, so that an envelope checked once (on
// gossip receipt, by the leader before it appends an entry) costs a hash
// rather than an ed25519 verification the next time it is opened (in
// every replica's FSM). Verification is a pure function of the bytes:
// skipping it for bytes already verified cannot change any result, and
// bytes that differ in one bit have another digest and are verified
// afresh. Only successes are remembered.
//
// It holds a fixed number of digests (clock eviction: an entry opened
// again since the hand last passed gets a second chance) and is safe for
// concurrent use. A nil *VerifyCache remembers nothing: its Open is Open.
type VerifyCache struct {
	shards         [verifyCacheShards]verifyShard
	hits, verified atomic.Uint64
}

type verifyShard struct {
	mu    sync.Mutex
	index map[[sha256.Size]byte]int32 // digest -> slot
	slots []verifySlot
	hand  int
}

type verifySlot struct {
	digest [sha256.Size]byte
	used   bool // holds a digest
	ref    bool // found since the hand last passed
}

// NewVerifyCache returns a cache of about size digests (at least one per
// shard).
func NewVerifyCache(size int) *VerifyCache {
	per := max(1, (size+verifyCacheShards-1)/verifyCacheShards)
	c := &VerifyCache{}
	for i := range c.shards {
		c.shards[i].index = make(map[[sha256.Size]byte]int32, per)
		c.shards[i].slots = make([]verifySlot, per)
	}
	return c
}

// Open has the contract of the package's Open, errors included: it
// decodes b, and verifies its signature unless these exact bytes verified
// before; a verified envelope is remembered.
func (c *VerifyCache) Open(b []byte) (*Envelope, error) {
	if c == nil {
		return Open(b)
	}
	e, err := parse(b)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(b)
	s := &c.shards[d[0]%verifyCacheShards]
	if s.lookup(d) {
		c.hits.Add(1)
		return e, nil
	}
	if !e.verify() {
		return nil, ErrBadSignature
	}
	c.verified.Add(1)
	s.insert(d)
	return e, nil
}

// VerifyCacheStats are a cache's counters.
type VerifyCacheStats struct {
	// Hits are opens whose signature check was skipped; Verified the
	// signatures verified (and remembered); Len the digests held, Cap
	// how many it can hold.
	Hits, Verified uint64
	Len, Cap       int
}

// Stats returns the cache's counters.
func (c *VerifyCache) Stats() VerifyCacheStats {
	if c == nil {
		return VerifyCacheStats{}
	}
	st := VerifyCacheStats{Hits: c.hits.Load(), Verified: c.verified.Load()}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Len += len(s.index)
		st.Cap += len(s.slots)
		s.mu.Unlock()
	}
	return st
}

func (s *verifyShard) lookup(d [sha256.Size]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[d]
	if ok {
		s.slots[i].ref = true
	}
	return ok
}

// insert adds d, evicting by the clock: the hand clears the reference bit
// of each entry it passes and takes the first slot that is free or was
// not found since its last pass.
func (s *verifyShard) insert(d [sha256.Size]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[d]; ok {
		return // verified concurrently by another caller
	}
	for {
		slot := &s.slots[s.hand]
		i := s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		if slot.used && slot.ref {
			slot.ref = false
			continue
		}
		if slot.used {
			delete(s.index, slot.digest)
		}
		*slot = verifySlot{digest: d, used: true}
		s.index[d] = int32(i)
		return
	}
}
