package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// The one walk over a key family. Every read that visits more than one key
// (lists, counts, lookups by range, prunes, the raft log's edges and
// ranges) is a scan run by each; every prune is a scan run by prune.

// scan describes a walk over the keys under prefix.
type scan struct {
	prefix []byte
	// start is the key the walk begins at: the first key at or after it,
	// or with reverse the last key at or before it. Nil starts at the
	// first key under prefix, or with reverse at the last.
	start   []byte
	reverse bool
	// keysOnly skips prefetching values, for walks that read keys (or
	// value sizes) alone.
	keysOnly bool
	// prefetch caps how many values are prefetched; 0 keeps Badger's
	// default.
	prefetch int
}

// errStop ends a walk early without an error.
var errStop = errors.New("stop scan")

// each calls fn with every item of the walk, in order, until fn returns
// errStop (each then returns nil) or another error (returned as is). The
// item is only valid during the call.
func (sc scan) each(txn *badger.Txn, fn func(*badger.Item) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = sc.prefix
	opts.Reverse = sc.reverse
	opts.PrefetchValues = !sc.keysOnly
	if sc.prefetch > 0 && sc.prefetch < opts.PrefetchSize {
		opts.PrefetchSize = sc.prefetch
	}
	it := txn.NewIterator(opts)
	defer it.Close()
	switch {
	case sc.start != nil:
		it.Seek(sc.start)
	case sc.reverse:
		it.Seek(reverseSeekKey(sc.prefix))
	default:
		it.Rewind()
	}
	for ; it.Valid(); it.Next() {
		if err := fn(it.Item()); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// view runs fn in a read transaction as one operation of the store.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	return s.db.View(fn)
}

// write runs fn in a read-write transaction (see update) as one operation
// of the store.
func (s *Store) write(fn func(txn *badger.Txn) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()
	return s.update(fn)
}

// insert stores v under key, or returns ErrExists and stores nothing if
// key is already stored.
func (s *Store) insert(key, v []byte) error {
	return s.write(func(txn *badger.Txn) error {
		switch _, err := txn.Get(key); {
		case err == nil:
			return ErrExists
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		return txn.Set(key, v)
	})
}

// remove deletes key, or returns ErrNotFound if it is not stored.
func (s *Store) remove(key []byte) error {
	return s.write(func(txn *badger.Txn) error {
		if _, err := txn.Get(key); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			}
			return err
		}
		return txn.Delete(key)
	})
}

// list decodes up to limit values stored under prefix, in key order or,
// with newestFirst, in reverse key order (newest first for the families
// keyed by time). limit <= 0 means all of them. what names the family in
// errors.
func list[T any](s *Store, what string, prefix []byte, newestFirst bool, limit int, decode func(*badger.Item) (T, error)) ([]T, error) {
	out, err := collect(s, scan{prefix: prefix, reverse: newestFirst, prefetch: max(limit, 0)}, limit, decode)
	return out, wrap("read "+what, err)
}

// wrap adds context to an error of the operation what; nil stays nil and
// ErrClosed is returned as is.
func wrap(what string, err error) error {
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// collect decodes up to limit items of sc (all of them when limit <= 0).
// Errors are the caller's to wrap.
func collect[T any](s *Store, sc scan, limit int, decode func(*badger.Item) (T, error)) ([]T, error) {
	var out []T
	err := s.view(func(txn *badger.Txn) error {
		return sc.each(txn, func(item *badger.Item) error {
			if limit > 0 && len(out) >= limit {
				return errStop
			}
			v, err := decode(item)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// count returns how many keys are stored under prefix. It walks the keys,
// so it costs time proportional to the count.
func (s *Store) count(prefix []byte) (int, error) {
	n := 0
	err := s.view(func(txn *badger.Txn) error {
		return scan{prefix: prefix, keysOnly: true}.each(txn, func(*badger.Item) error {
			n++
			return nil
		})
	})
	return n, err
}

// jsonValue decodes an item's value as JSON into a T.
func jsonValue[T any](what string) func(*badger.Item) (T, error) {
	return func(item *badger.Item) (T, error) {
		var v T
		if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
			return v, fmt.Errorf("decode %s %q: %w", what, item.Key(), err)
		}
		return v, nil
	}
}

// victimFunc tells prune what to do with one item: the keys to delete for
// it (none keeps it), or stop to end the prune before this item.
type victimFunc func(item *badger.Item) (keys [][]byte, stop bool, err error)

// prune walks sc in batches of up to batch items selected by victim. Each
// batch is read in one transaction and its keys are deleted by del (one
// transaction for s.deleteKeys); the next batch resumes after the last key
// examined. It returns how many items were selected and deleted. Deleting
// in walk order means an interrupted prune leaves a store that a later one
// simply continues.
func (s *Store) prune(sc scan, batch int, victim victimFunc, del func([][]byte) error) (int, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.release()
	total := 0
	var after []byte // the last key examined
	for {
		var keys [][]byte
		n, done := 0, true
		err := s.db.View(func(txn *badger.Txn) error {
			walk := sc
			if after != nil {
				walk.start = after
			}
			return walk.each(txn, func(item *badger.Item) error {
				if after != nil && bytes.Equal(item.Key(), after) {
					return nil // examined by the previous batch
				}
				if n >= batch {
					done = false
					return errStop
				}
				ks, stop, err := victim(item)
				if err != nil || stop {
					if err == nil {
						err = errStop
					}
					return err
				}
				after = item.KeyCopy(after[:0])
				if len(ks) > 0 {
					keys = append(keys, ks...)
					n++
				}
				return nil
			})
		})
		if err != nil {
			return total, err
		}
		if len(keys) > 0 {
			if err := del(keys); err != nil {
				return total, err
			}
			total += n
		}
		if done {
			return total, nil
		}
	}
}

// deleteKeys deletes keys in one transaction: all of them or none.
func (s *Store) deleteKeys(keys [][]byte) error {
	return s.update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeInOrder applies op to the items 0..n-1 in index order in as few
// transactions as hold them: when a transaction grows too big, what fits
// is committed and the rest goes to the next one. If everything fits it is
// one transaction, all or nothing; otherwise a crash leaves a prefix done.
// op must write exactly one entry, so that a refused entry leaves nothing
// of itself in the committed part.
func (s *Store) writeInOrder(n int, op func(txn *badger.Txn, i int) error) error {
	for done := 0; done < n; {
		k := 0
		err := s.update(func(txn *badger.Txn) error {
			k = 0
			for done+k < n {
				err := op(txn, done+k)
				if errors.Is(err, badger.ErrTxnTooBig) && k > 0 {
					return nil // commit what fits
				}
				if err != nil {
					return err
				}
				k++
			}
			return nil
		})
		if err != nil {
			return err
		}
		done += k
	}
	return nil
}
