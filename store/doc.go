// Package store is Meshward's persistence layer on Badger v4. It is the one
// owner of every Badger handle in a node: nothing else opens the data
// directory.
//
// It owns, each under its own key prefix in one Badger database:
//
//   - envelopes (signed gossip messages) keyed by origin node ID and
//     sequence number, stored as the exact bytes that were signed, with a
//     per-origin high-water mark for anti-entropy;
//   - an index of sightings by indicator and by arrival time, written in the
//     same transaction as the envelope that carries them, and an index of
//     every envelope by arrival time so that Prune can enforce retention;
//   - the node's own envelope sequence counter, which survives restarts and
//     never hands out a number twice;
//   - local decisions: node-local, time-bounded policies;
//   - the Raft log and stable store (RaftStore), which satisfy
//     hashicorp/raft's LogStore and StableStore;
//   - the admin API's tokens (hashed, never the secret), its audit trail and
//     detection acknowledgements;
//   - durable delivery queues (Queue), e.g. for webhook events.
//
// Every read that walks keys is one scan (scan.go), and every prune one
// batched walk that deletes what it selects, so that iteration, batching
// and resumption are written once for every family.
//
// Open starts nothing; Start runs the value-log collector until its
// context ends or Close, which waits for it and for operations in flight.
// Config is the node's YAML section "store" (retention).
//
// Every write is one Badger transaction, except bulk work that may not fit
// in one (DeleteRange, Prune, an oversized StoreLogs batch), which is split
// in an order that leaves the store consistent if interrupted. By default
// every commit is synced to disk before it returns, so what a caller was
// told is stored survives a crash or a power loss.
//
// It must never:
//
//   - re-encode an envelope: Raw is stored and returned verbatim, so the
//     signature over it stays valid for relaying and anti-entropy;
//   - verify signatures or decide anything: callers validate before they
//     store, and read back what they need to decide;
//   - read the clock to decide what is stored: callers pass the times;
//   - hand out Badger types or let a Badger error text reach raft where raft
//     expects "not found" semantics.
package store
