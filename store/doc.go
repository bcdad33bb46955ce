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
// Open starts the envelope committer (group commit, group.go); Start runs
// the value-log collector until its context ends or Close, which waits
// for operations in flight and for both. Values of 128 bytes and more
// (every envelope, Raft log entries with a command) are written to
// Badger's value log, its LSM tree holding their keys, so that flushes
// and compactions do not copy them again; the collector reclaims what
// Prune and DeleteRange leave there once compaction has counted it.
// Config is the node's YAML section "store": retention, and encryption at
// rest (encryption_key_file, encryption_key_env, encryption_key_rotation).
//
// Encryption at rest (atrest.go, snapshot.go, rekey.go). With a key
// (AES-256; LoadKey reads it from a 0600 file as 32 raw bytes, 64 hex
// digits or base64, or from an environment variable as hex or base64,
// the variable winning when set) Badger encrypts every table, value log
// and write-ahead log, so the Raft log and stable store too, under data
// keys it makes every encryption_key_rotation and keeps in its key
// registry encrypted under the key. Open refuses, by a sentinel error,
// an encrypted store without a key (ErrKeyRequired), with another key
// (ErrWrongKey) and an unencrypted store with a key (ErrNotEncrypted):
// it never starts an empty store in their place.
// EncryptedSnapshotStore wraps raft's snapshot store: each snapshot is
// AES-256-GCM in 64 KiB chunks under a key derived (HKDF-SHA256) from
// the store key and a per-snapshot random salt, with a random nonce
// prefix, a chunk counter and a last-chunk flag, so that altered,
// reordered and truncated snapshots fail (ErrSnapshotCorrupt) and a
// snapshot under another key or none is named as such. Raft's meta.json
// beside it (index, term, the node IDs of the configuration) stays
// plaintext. Rekey changes the key offline under the store's directory
// lock: key to key by re-encrypting the key registry (or, with Rewrite,
// every table under fresh data keys), encrypt and decrypt by streaming
// into a new store that replaces the old; it re-encrypts the snapshots
// one by one and completes an interrupted run when run again.
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
