package store

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Group commit of envelopes. PutEnvelope and PutEnvelopes hand their
// writes to the store's committer, one goroutine started by Open and
// stopped by Close. The committer takes everything waiting in its queue
// (up to maxGroupEntries envelopes and a byte bound that keeps the group
// inside one Badger transaction), writes it in one transaction, so one
// write and, with SyncWrites, one fsync, and only then answers every
// caller with its own result. While one group is being synced the next
// one gathers, so the more callers wait together, the fewer syncs each
// envelope costs; a lone caller pays one sync, as before.
//
// Within a group the envelopes are written in queue order, each seeing
// the ones before it (a Badger transaction reads its own writes): of two
// envelopes with the same origin and sequence number the first is stored
// and the second reports added=false, exactly as if they had come one
// after the other, and each origin's high-water mark is the highest
// sequence number stored. A group that does not fit one transaction
// (ErrTxnTooBig) is written as several, each synced before its callers
// are answered. An envelope that cannot be written fails alone; a failed
// commit fails the callers whose envelopes it carried, with the cause,
// and no other: groups committed before it stay committed. An error
// reading the store fails the rest of the group.

const (
	// maxGroupEntries bounds the envelopes of one group.
	maxGroupEntries = 2048
	// putQueueSize is how many requests may wait for the committer; a
	// caller beyond it blocks until the committer catches up.
	putQueueSize = 4096
	// entryOverhead is what Badger adds to each key and value when it
	// sizes a transaction (metadata and the version suffix).
	entryOverhead = 12
	// valuePointerSize is what a value kept in the value log takes in a
	// transaction instead of its bytes.
	valuePointerSize = 12
)

// errCommitterStopped answers a request the committer received after it
// was told to stop; Close stops it only when no call is in flight, so it
// is never returned in practice.
var errCommitterStopped = errors.New("envelope committer stopped")

// envelopeWrite is one envelope's keys and values, computed by the caller
// so that the committer only reads and writes.
type envelopeWrite struct {
	origin    string
	seq       uint64
	raw       []byte
	key       []byte   // the envelope
	hwKey     []byte   // its origin's high-water mark
	rcvKey    []byte   // arrival index
	rcvVal    []byte   // its value: indKey without origin and seq, or nil
	indKey    []byte   // nil unless a sighting
	sightKeys [][]byte // indicator and time indexes of a sighting
	sightVal  []byte   // their value
	size      int64    // Badger's estimate of the transaction space it takes (submit)
	added     bool     // set by the committer
	err       error    // set by the committer
}

// estimate is the transaction space w takes as Badger counts it
// (Txn.checkSize): each key, each value or, from threshold on, the pointer
// to it in the value log, and entryOverhead.
func (w *envelopeWrite) estimate(threshold int64) int64 {
	val := func(n int) int {
		if int64(n) >= threshold {
			return valuePointerSize
		}
		return n
	}
	n := len(w.key) + val(len(w.raw)) + len(w.rcvKey) + val(len(w.rcvVal)) + len(w.hwKey) + 8 + 3*entryOverhead
	for _, k := range w.sightKeys {
		n += len(k) + val(len(w.sightVal)) + entryOverhead
	}
	return int64(n)
}

// putReq is one call waiting for the committer: its envelopes are written
// in order, in the same group, and done is closed once every one of them
// has its result.
type putReq struct {
	writes []envelopeWrite
	done   chan struct{}
	// one holds the write of a single envelope (PutEnvelope), so that
	// request and write are one allocation.
	one [1]envelopeWrite
}

// committer is the goroutine that writes groups.
type committer struct {
	s    *Store
	q    chan *putReq
	stop chan struct{}
	done chan struct{}

	// maxBytes bounds a group's estimated transaction size: 7/8 of what
	// Badger allows. The estimate counts every entry as Badger does (and
	// a high-water mark even when it is not raised), so ErrTxnTooBig only
	// comes from the count of entries, which groups of small envelopes
	// may reach; each commit then carries as many envelopes as a sync can.
	maxBytes int64
	// threshold is the store's value threshold (Options.ValueThreshold
	// as Badger was opened with it), from which a value takes a pointer's
	// space in a transaction.
	threshold int64
	// hook, when set (in tests), runs before each commit; an error fails
	// the commit.
	hook func(txn *badger.Txn, n int) error

	groups  atomic.Uint64 // groups gathered
	commits atomic.Uint64 // transactions committed that wrote (one sync each)
	stored  atomic.Uint64 // envelopes they added
}

// CommitStats are the envelope committer's counters since Open.
type CommitStats struct {
	// Groups are the groups of waiting calls gathered; Commits the
	// transactions that wrote (one write and, with SyncWrites, one sync
	// each); Stored the envelopes they added. Stored/Commits is how many
	// envelopes a sync carries.
	Groups, Commits, Stored uint64
}

// CommitStats returns the envelope committer's counters.
func (s *Store) CommitStats() CommitStats {
	c := s.group
	return CommitStats{Groups: c.groups.Load(), Commits: c.commits.Load(), Stored: c.stored.Load()}
}

func newCommitter(s *Store, threshold int64) *committer {
	return &committer{
		s:         s,
		q:         make(chan *putReq, putQueueSize),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		maxBytes:  max(s.db.MaxBatchSize()/8*7, 1),
		threshold: threshold,
	}
}

// close stops the committer and waits for it. The store calls it once no
// operation is in flight, so the queue is empty.
func (c *committer) close() {
	close(c.stop)
	<-c.done
}

// submit queues r and waits for its results. The caller holds an
// operation of the store (acquire), so the committer runs until r is
// answered.
func (c *committer) submit(r *putReq) {
	for i := range r.writes {
		r.writes[i].size = r.writes[i].estimate(c.threshold)
	}
	r.done = make(chan struct{})
	select {
	case c.q <- r:
	case <-c.stop:
		for i := range r.writes {
			r.writes[i].err = errCommitterStopped
		}
		return
	}
	<-r.done
}

func (c *committer) run() {
	defer close(c.done)
	var reqs []*putReq
	var group []*envelopeWrite
	// held is a request taken from the queue that did not fit the last
	// group: it opens the next one.
	var held *putReq
	for {
		if held != nil {
			reqs, held = append(reqs[:0], held), nil
		} else {
			select {
			case r := <-c.q:
				reqs = append(reqs[:0], r)
			case <-c.stop:
				return
			}
		}
		n, size := len(reqs[0].writes), reqSize(reqs[0])
	gather:
		for n < maxGroupEntries && size < c.maxBytes {
			select {
			case r := <-c.q:
				rs := reqSize(r)
				if n+len(r.writes) > maxGroupEntries || size+rs > c.maxBytes {
					held = r
					break gather
				}
				reqs = append(reqs, r)
				n += len(r.writes)
				size += rs
			default:
				break gather
			}
		}
		group = group[:0]
		for _, r := range reqs {
			for i := range r.writes {
				group = append(group, &r.writes[i])
			}
		}
		c.groups.Add(1)
		c.write(group)
		for _, r := range reqs {
			close(r.done)
		}
		clear(reqs)
		clear(group)
	}
}

func reqSize(r *putReq) int64 {
	var n int64
	for i := range r.writes {
		n += r.writes[i].size
	}
	return n
}

// write stores group in as few transactions as it fits, committing each
// before it goes on; every write ends with added or err set.
func (c *committer) write(group []*envelopeWrite) {
	conflicts := 0
	for len(group) > 0 {
		txn := c.s.db.NewTransaction(true)
		n, full, err := apply(txn, group)
		if full {
			// The transaction holds part of group[n], which must not be
			// committed: build it again with the envelopes that fit.
			txn.Discard()
			txn = c.s.db.NewTransaction(true)
			n, full, err = apply(txn, group[:n])
			if full {
				err = fmt.Errorf("%d envelopes that fitted one transaction no longer fit: %w", n, badger.ErrTxnTooBig)
			}
		}
		var rerr readError
		switch {
		case errors.As(err, &rerr):
			// The store cannot be read: every envelope not yet written
			// fails with the cause.
			txn.Discard()
			fail(group, rerr.err)
			return
		case err != nil && !full:
			// An envelope that alone cannot be written fails, and the
			// transaction is built again without it.
			txn.Discard()
			group[n].added, group[n].err = false, err
			continue
		case err != nil:
			txn.Discard()
			fail(group, err)
			return
		}
		part := group[:n]
		if c.hook != nil {
			if err = c.hook(txn, len(part)); err != nil {
				txn.Discard()
			}
		}
		if err == nil {
			err = txn.Commit()
		}
		if errors.Is(err, badger.ErrConflict) && conflicts < maxConflictRetries {
			conflicts++ // lost to a concurrent Prune: read again and retry
			continue
		}
		if err != nil {
			fail(part, err)
		} else if k := added(part); k > 0 {
			// A transaction that only found duplicates wrote nothing
			// and synced nothing.
			c.commits.Add(1)
			c.stored.Add(uint64(k))
		}
		group = group[n:]
		conflicts = 0
	}
}

// fail sets err on every write of group that has no error yet.
func fail(group []*envelopeWrite, err error) {
	for _, w := range group {
		if w.err == nil {
			w.added, w.err = false, err
		}
	}
}

// readError is an error reading the store, which no envelope causes.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

func added(group []*envelopeWrite) int {
	n := 0
	for _, w := range group {
		if w.err == nil && w.added {
			n++
		}
	}
	return n
}

// apply writes the envelopes of group in txn, skipping those that already
// failed, and returns how many it took: all of them, or with full the
// ones before the first that did not fit (txn then holds part of it and
// must be discarded). When an envelope does not fit even an otherwise
// empty transaction, or its write fails otherwise, apply returns its
// index and the error, and txn must be discarded.
func apply(txn *badger.Txn, group []*envelopeWrite) (n int, full bool, err error) {
	empty := true
	for i, w := range group {
		if w.err != nil {
			continue
		}
		added, err := putEnvelope(txn, w)
		switch {
		case err == nil:
			w.added = added
			empty = false
		case errors.Is(err, badger.ErrTxnTooBig) && !empty:
			return i, true, nil
		case errors.Is(err, badger.ErrTxnTooBig):
			return i, false, fmt.Errorf("envelope of %d bytes does not fit one transaction: %w", len(w.raw), err)
		default:
			return i, false, err
		}
	}
	return len(group), false, nil
}

// putEnvelope writes w in txn unless an envelope with its origin and
// sequence number is stored (or written earlier in txn), and raises the
// origin's high-water mark.
func putEnvelope(txn *badger.Txn, w *envelopeWrite) (added bool, err error) {
	hw, err := getUint64(txn, w.hwKey)
	if err != nil {
		return false, readError{err}
	}
	// Every envelope stored has a sequence number at or below its
	// origin's high-water mark, which is written with it and never
	// lowered (Prune keeps it): one above the mark is not stored, and
	// only one at or below it is looked up.
	if w.seq <= hw {
		switch _, err := txn.Get(w.key); {
		case err == nil:
			return false, nil
		case !errors.Is(err, badger.ErrKeyNotFound):
			return false, readError{err}
		}
	}
	if err := txn.Set(w.key, w.raw); err != nil {
		return false, err
	}
	if err := txn.Set(w.rcvKey, w.rcvVal); err != nil {
		return false, err
	}
	if w.seq > hw {
		if err := txn.Set(w.hwKey, appendUint64(nil, w.seq)); err != nil {
			return false, err
		}
	}
	for _, k := range w.sightKeys {
		if err := txn.Set(k, w.sightVal); err != nil {
			return false, err
		}
	}
	return true, nil
}
