package consensus

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// decodeMemoSize bounds the decoded commands the leader keeps between its
// early check and Apply: far more than are in flight, so that an entry is
// found unless it was proposed and never applied (a lost leadership, a
// timeout), and such leftovers age out first.
const decodeMemoSize = 256

// decodeMemoMaxEntry is the largest entry whose decoding is kept: an
// automatic block with a few proofs fits many times over, and the memo
// holds at most decodeMemoSize of these (a few MB decoded).
const decodeMemoMaxEntry = 16 << 10

// decodeMemo lets the leader decode each of its entries once. Its early
// check (precheck) decodes the entry and puts the result here, keyed by
// the SHA-256 of the entry's exact bytes; Apply takes it out (delete on
// use) instead of decoding the same bytes again. Decoding is a pure
// function of the bytes, so Apply's result is the same either way: bytes
// that differ in one bit have another digest and are decoded afresh.
// Followers never put anything here, and Apply on a node whose memo is
// empty does not even hash.
//
// A command put here is never mutated afterwards, neither by the caller
// nor by the FSM (the handlers copy what they keep), so handing the same
// value to Apply is as good as a private copy.
//
// It holds at most decodeMemoSize commands, evicted oldest first, and is
// safe for concurrent use. A nil *decodeMemo remembers nothing.
type decodeMemo struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]memoEntry
	ring  [decodeMemoSize][sha256.Size]byte // insertion order, for eviction
	next  uint64                            // insertions so far; ring slot next%decodeMemoSize is the oldest
	held  atomic.Int32                      // len(byKey), read without the lock
}

type memoEntry struct {
	cmd Command
	seq uint64 // the insertion that wrote it (its ring slot is seq%decodeMemoSize)
}

func newDecodeMemo() *decodeMemo {
	return &decodeMemo{byKey: make(map[[sha256.Size]byte]memoEntry, decodeMemoSize)}
}

// put remembers c, DecodeCommand(data)'s result. c must not be mutated
// afterwards.
func (m *decodeMemo) put(data []byte, c Command) {
	if m == nil || len(data) > decodeMemoMaxEntry {
		return
	}
	d := sha256.Sum256(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byKey[d]; ok {
		return // the same bytes proposed twice: the decoding is the same
	}
	slot := m.next % decodeMemoSize
	if old := m.ring[slot]; m.next >= decodeMemoSize {
		// The oldest insertion's slot: evict it unless it was taken
		// already (or its digest was put again later, in another slot).
		if e, ok := m.byKey[old]; ok && e.seq%decodeMemoSize == slot {
			delete(m.byKey, old)
		}
	}
	m.ring[slot] = d
	m.byKey[d] = memoEntry{cmd: c, seq: m.next}
	m.next++
	m.held.Store(int32(len(m.byKey)))
}

// take returns and forgets the command remembered for data, if any.
func (m *decodeMemo) take(data []byte) (Command, bool) {
	if m == nil || m.held.Load() == 0 || len(data) > decodeMemoMaxEntry {
		return Command{}, false
	}
	d := sha256.Sum256(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byKey[d]
	if !ok {
		return Command{}, false
	}
	delete(m.byKey, d)
	m.held.Store(int32(len(m.byKey)))
	return e.cmd, true
}

// drop forgets the command remembered for data, if any: the proposer's
// entry failed or its wait ended, and Apply may never come for it. If it
// does, it decodes.
func (m *decodeMemo) drop(data []byte) {
	_, _ = m.take(data)
}

// len is the number of commands held.
func (m *decodeMemo) len() int {
	if m == nil {
		return 0
	}
	return int(m.held.Load())
}
