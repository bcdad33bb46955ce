package store

import (
	"encoding/json"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// list decodes up to limit values stored under prefix, in key order or,
// with newestFirst, in reverse key order (newest first for the families
// keyed by time). limit <= 0 means all of them. what names the family in
// errors.
func list[T any](s *Store, what string, prefix []byte, newestFirst bool, limit int, decode func(*badger.Item) (T, error)) ([]T, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	var out []T
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = newestFirst
		if limit > 0 && limit < opts.PrefetchSize {
			opts.PrefetchSize = limit
		}
		it := txn.NewIterator(opts)
		defer it.Close()
		if newestFirst {
			it.Seek(reverseSeekKey(prefix))
		} else {
			it.Rewind()
		}
		for ; it.Valid(); it.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			v, err := decode(it.Item())
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
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

// deleteKeys deletes keys in one transaction.
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
