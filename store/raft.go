package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// RaftStore is the Raft log and stable store, kept in the Store's Badger
// database under their own prefixes. It is valid until the Store is
// closed; shut raft down first.
type RaftStore struct{ s *Store }

var (
	_ raft.LogStore    = (*RaftStore)(nil)
	_ raft.StableStore = (*RaftStore)(nil)
)

// RaftStore returns the Raft log and stable store backed by s.
func (s *Store) RaftStore() *RaftStore { return s.raw }

// deleteChunk is how many log keys DeleteRange deletes per transaction; a
// transaction that still turns out too big is split further.
const deleteChunk = 4096

// FirstIndex returns the first index stored, 0 if none.
func (r *RaftStore) FirstIndex() (uint64, error) {
	idx, err := r.edgeIndex(false)
	if err != nil {
		return 0, fmt.Errorf("raft first index: %w", err)
	}
	return idx, nil
}

// LastIndex returns the last index stored, 0 if none.
func (r *RaftStore) LastIndex() (uint64, error) {
	idx, err := r.edgeIndex(true)
	if err != nil {
		return 0, fmt.Errorf("raft last index: %w", err)
	}
	return idx, nil
}

func (r *RaftStore) edgeIndex(last bool) (uint64, error) {
	var idx uint64
	err := r.s.view(func(txn *badger.Txn) error {
		return scan{prefix: prefixRaftLog, reverse: last, keysOnly: true}.each(txn, func(item *badger.Item) error {
			var err error
			idx, err = parseRaftLogKey(item.Key())
			if err != nil {
				return err
			}
			return errStop
		})
	})
	return idx, err
}

func parseRaftLogKey(k []byte) (uint64, error) {
	if len(k) != len(prefixRaftLog)+8 {
		return 0, fmt.Errorf("malformed raft log key %q", k)
	}
	return binary.BigEndian.Uint64(k[len(prefixRaftLog):]), nil
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound.
func (r *RaftStore) GetLog(index uint64, log *raft.Log) error {
	err := r.s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(raftLogKey(index))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return decodeLog(v, log) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raft get log %d: %w", index, err)
	}
	return nil
}

// StoreLog stores one entry.
func (r *RaftStore) StoreLog(log *raft.Log) error {
	return r.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one transaction: all of them or none. Should
// a batch exceed what one Badger transaction holds (about 15% of a
// memtable: MaxAppendEntries entries of large commands), it is written in
// index order in several transactions, so a crash leaves a prefix of the
// batch, which raft treats like a shorter append.
func (r *RaftStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s := r.s
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	keys := make([][]byte, len(logs))
	vals := make([][]byte, len(logs))
	for i, l := range logs {
		keys[i] = raftLogKey(l.Index)
		v, err := encodeLog(l)
		if err != nil {
			return fmt.Errorf("raft store log %d: %w", l.Index, err)
		}
		vals[i] = v
	}
	err := s.writeInOrder(len(keys), func(txn *badger.Txn, i int) error { return txn.Set(keys[i], vals[i]) })
	if err != nil {
		return fmt.Errorf("raft store logs %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max inclusive. Ranges of any
// size are deleted in several transactions, in the order that keeps the
// remaining log contiguous if a crash interrupts it: from the front when
// the range starts at the first index (compaction), from the back
// otherwise (removing a conflicting suffix).
func (r *RaftStore) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	first, err := r.FirstIndex()
	if err != nil {
		return fmt.Errorf("raft delete range %d-%d: %w", min, max, err)
	}
	fromBack := min > first
	sc := scan{prefix: prefixRaftLog, start: raftLogKey(min), keysOnly: true}
	if fromBack {
		sc.start, sc.reverse = raftLogKey(max), true
	}
	_, err = r.s.prune(sc, deleteChunk, func(item *badger.Item) ([][]byte, bool, error) {
		idx, err := parseRaftLogKey(item.Key())
		if err != nil || idx < min || idx > max {
			return nil, true, err
		}
		return [][]byte{item.KeyCopy(nil)}, false, nil
	}, r.deleteInOrder)
	if err != nil {
		return wrap(fmt.Sprintf("raft delete range %d-%d", min, max), err)
	}
	return nil
}

// deleteInOrder deletes keys in order, in as few transactions as hold
// them.
func (r *RaftStore) deleteInOrder(keys [][]byte) error {
	return r.s.writeInOrder(len(keys), func(txn *badger.Txn, i int) error { return txn.Delete(keys[i]) })
}

// Set stores a stable value.
func (r *RaftStore) Set(key, val []byte) error {
	v := append([]byte{}, val...)
	return wrap(fmt.Sprintf("raft stable set %q", key), r.s.write(func(txn *badger.Txn) error { return txn.Set(raftStableKey(key), v) }))
}

// Get returns a stable value, or (nil, nil) if key was never set.
func (r *RaftStore) Get(key []byte) ([]byte, error) {
	var val []byte
	err := r.s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(raftStableKey(key))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raft stable get %q: %w", key, err)
	}
	return val, nil
}

// SetUint64 stores a stable integer.
func (r *RaftStore) SetUint64(key []byte, val uint64) error {
	return r.Set(key, appendUint64(nil, val))
}

// GetUint64 returns a stable integer, or (0, nil) if key was never set.
func (r *RaftStore) GetUint64(key []byte) (uint64, error) {
	v, err := r.Get(key)
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft stable get %q: value is %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
