package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

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
	s := r.s
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	var idx uint64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRaftLog
		opts.PrefetchValues = false
		opts.Reverse = last
		it := txn.NewIterator(opts)
		defer it.Close()
		if last {
			it.Seek(reverseSeekKey(prefixRaftLog))
		} else {
			it.Rewind()
		}
		if !it.Valid() {
			return nil
		}
		var err error
		idx, err = parseRaftLogKey(it.Item().Key())
		return err
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
	s := r.s
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	err := s.db.View(func(txn *badger.Txn) error {
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
	err := s.update(func(txn *badger.Txn) error {
		for i := range keys {
			if err := txn.Set(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		err = r.storeChunked(keys, vals)
	}
	if err != nil {
		return fmt.Errorf("raft store logs %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	return nil
}

func (r *RaftStore) storeChunked(keys, vals [][]byte) error {
	for len(keys) > 0 {
		n := 0
		err := r.s.update(func(txn *badger.Txn) error {
			n = 0
			for n < len(keys) {
				err := txn.Set(keys[n], vals[n])
				if errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
					return nil // commit what fits
				}
				if err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys, vals = keys[n:], vals[n:]
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
	s := r.s
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	fromBack := min > first
	for {
		keys, err := r.collect(min, max, fromBack)
		if err != nil {
			return fmt.Errorf("raft delete range %d-%d: %w", min, max, err)
		}
		if len(keys) == 0 {
			return nil
		}
		if err := r.deleteKeys(keys); err != nil {
			return fmt.Errorf("raft delete range %d-%d: %w", min, max, err)
		}
	}
}

// collect returns up to deleteChunk log keys in [min, max], from the
// front or from the back.
func (r *RaftStore) collect(min, max uint64, fromBack bool) ([][]byte, error) {
	var keys [][]byte
	err := r.s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRaftLog
		opts.PrefetchValues = false
		opts.Reverse = fromBack
		it := txn.NewIterator(opts)
		defer it.Close()
		if fromBack {
			it.Seek(raftLogKey(max))
		} else {
			it.Seek(raftLogKey(min))
		}
		for ; it.Valid() && len(keys) < deleteChunk; it.Next() {
			k := it.Item().KeyCopy(nil)
			idx, err := parseRaftLogKey(k)
			if err != nil {
				return err
			}
			if idx < min || idx > max {
				break
			}
			keys = append(keys, k)
		}
		return nil
	})
	return keys, err
}

func (r *RaftStore) deleteKeys(keys [][]byte) error {
	for len(keys) > 0 {
		n := 0
		err := r.s.update(func(txn *badger.Txn) error {
			n = 0
			for n < len(keys) {
				err := txn.Delete(keys[n])
				if errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
					return nil
				}
				if err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// Set stores a stable value.
func (r *RaftStore) Set(key, val []byte) error {
	s := r.s
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	v := append([]byte{}, val...)
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(raftStableKey(key), v) }); err != nil {
		return fmt.Errorf("raft stable set %q: %w", key, err)
	}
	return nil
}

// Get returns a stable value, or (nil, nil) if key was never set.
func (r *RaftStore) Get(key []byte) ([]byte, error) {
	s := r.s
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
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

// Raft log encoding, version 1:
//
//	1 byte   format version (1)
//	uvarint  Index
//	uvarint  Term
//	1 byte   Type
//	uvarint  length of AppendedAt's MarshalBinary form, then those bytes
//	         (0: the zero time)
//	uvarint  0 for nil Data, else len(Data)+1, then Data
//	uvarint  0 for nil Extensions, else len(Extensions)+1, then Extensions
const logFormatV1 = 1

func encodeLog(l *raft.Log) ([]byte, error) {
	var ts []byte
	if !l.AppendedAt.IsZero() {
		var err error
		if ts, err = l.AppendedAt.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("encode appended-at: %w", err)
		}
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+1+len(ts)+len(l.Data)+len(l.Extensions)+2*binary.MaxVarintLen64)
	b = append(b, logFormatV1)
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	b = binary.AppendUvarint(b, uint64(len(ts)))
	b = append(b, ts...)
	b = appendNullableBytes(b, l.Data)
	b = appendNullableBytes(b, l.Extensions)
	return b, nil
}

func appendNullableBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

var errBadLog = errors.New("malformed raft log entry")

// decodeLog decodes b into l. b belongs to Badger and is only valid during
// the call, so every slice is copied.
func decodeLog(b []byte, l *raft.Log) error {
	if len(b) == 0 || b[0] != logFormatV1 {
		return fmt.Errorf("%w: unknown format", errBadLog)
	}
	d := decoder{b: b[1:]}
	idx := d.uvarint()
	term := d.uvarint()
	typ := d.byte()
	var at time.Time
	if ts := d.bytes(d.uvarint()); len(ts) > 0 && d.err == nil {
		if err := at.UnmarshalBinary(ts); err != nil {
			return fmt.Errorf("%w: appended-at: %w", errBadLog, err)
		}
	}
	data := d.nullableBytes()
	ext := d.nullableBytes()
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadLog, len(d.b))
	}
	*l = raft.Log{Index: idx, Term: term, Type: raft.LogType(typ), Data: data, Extensions: ext, AppendedAt: at}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errBadLog)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes returns the next n bytes, not copied.
func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) nullableBytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	v := d.bytes(n - 1)
	if d.err != nil {
		return nil
	}
	return append([]byte{}, v...)
}
