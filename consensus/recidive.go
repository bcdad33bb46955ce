package consensus

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Recidive: the mesh remembers which indicators it has blocked
// automatically, so that a source that comes back after its block
// expired is blocked for longer: an automatic block may last BlockTTL
// doubled once for every earlier automatic block of the same indicator,
// at most Rules.RecidiveDoublings times and never beyond maxBlockTTL.
// The history is part of the replicated state (and of snapshots), so the
// proposer and every replica compute the same cap from the log alone.
//
// Bounds: at most maxRecidiveRecords indicators are remembered; past it
// the one first recorded is forgotten (a deterministic order, the same on
// every replica). Counts stop at maxRecidiveCount.

const (
	maxRecidiveRecords = 16384
	maxRecidiveCount   = 255
	// maxRecidiveDoublings bounds Rules.RecidiveDoublings.
	maxRecidiveDoublings = 8
	// defaultRecidiveDoublings is what a new mesh is founded with.
	defaultRecidiveDoublings = 3
)

// recidive is the FSM's history of automatic blocks.
type recidive struct {
	counts map[uint64]uint8 // indicator key hash: earlier automatic blocks
	order  []uint64         // first recorded first, for eviction
}

func newRecidive() recidive { return recidive{counts: map[uint64]uint8{}} }

// recidiveKey hashes an indicator with a fixed function, the same on
// every replica.
func recidiveKey(ind intel.Indicator) uint64 {
	h := fnv.New64a()
	h.Write([]byte(ind.Key()))
	return h.Sum64()
}

// prior is how many automatic blocks of ind the mesh applied before.
func (r *recidive) prior(ind intel.Indicator) int { return int(r.counts[recidiveKey(ind)]) }

// record counts one more automatic block of ind.
func (r *recidive) record(ind intel.Indicator) {
	k := recidiveKey(ind)
	n, ok := r.counts[k]
	if !ok {
		if len(r.order) >= maxRecidiveRecords {
			delete(r.counts, r.order[0])
			r.order = slices.Delete(r.order, 0, 1)
		}
		r.order = append(r.order, k)
	}
	if n < maxRecidiveCount {
		r.counts[k] = n + 1
	}
}

func (r *recidive) clone() recidive {
	c := recidive{counts: make(map[uint64]uint8, len(r.counts)), order: slices.Clone(r.order)}
	for k, v := range r.counts {
		c.counts[k] = v
	}
	return c
}

// recidiveTTL is the longest an automatic block of an indicator blocked
// prior times before may last under rules.
func recidiveTTL(rules Rules, prior int) time.Duration {
	ttl := rules.BlockTTL
	for range min(prior, rules.RecidiveDoublings) {
		if ttl >= maxBlockTTL/2 {
			return maxBlockTTL
		}
		ttl *= 2
	}
	return min(ttl, maxBlockTTL)
}

// recidiveRecord is one remembered indicator in a snapshot, in the order
// they were first recorded.
type recidiveRecord struct {
	Key   uint64 `json:"k"`
	Count uint8  `json:"n"`
}

func (r *recidive) snapshot() []recidiveRecord {
	out := make([]recidiveRecord, 0, len(r.order))
	for _, k := range r.order {
		out = append(out, recidiveRecord{Key: k, Count: r.counts[k]})
	}
	return out
}

func restoreRecidive(recs []recidiveRecord) (recidive, error) {
	r := newRecidive()
	if len(recs) > maxRecidiveRecords {
		return r, fmt.Errorf("recidive: %d records, limit %d", len(recs), maxRecidiveRecords)
	}
	for i, rec := range recs {
		if _, dup := r.counts[rec.Key]; dup || rec.Count == 0 {
			return r, fmt.Errorf("recidive: record %d: a repeated key or a zero count", i)
		}
		r.counts[rec.Key] = rec.Count
		r.order = append(r.order, rec.Key)
	}
	return r, nil
}

// priorBlocks is how many automatic blocks of ind came before the one in
// force (id), if any, and whether one is in force. Caller holds the lock.
func (f *fsm) priorBlocks(ind intel.Indicator, id string, now time.Time) (prior int, inForce bool) {
	prior = f.recidive.prior(ind)
	if k, ok := parseID(id); ok {
		if cur, ok := f.policies.get(k); ok && cur.active(now) {
			inForce = true
			prior = max(prior-1, 0)
		}
	}
	return prior, inForce
}

// RecidiveTTL is how long an automatic block of ind may last now: the
// mesh's block TTL doubled for each earlier automatic block of ind (up to
// the rules' limit). Proposers use it; the FSM holds them to it.
func (c *Consensus) RecidiveTTL(ind intel.Indicator, now time.Time) time.Duration {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	prior, _ := c.fsm.priorBlocks(ind, intel.PolicyID(intel.ActionBlock, ind), now)
	return recidiveTTL(c.fsm.rules, prior)
}

// AutomaticBlocks is how many automatic blocks of ind the mesh has
// applied (the one in force included), as far as its bounded history
// remembers.
func (c *Consensus) AutomaticBlocks(ind intel.Indicator) int {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.recidive.prior(ind)
}
