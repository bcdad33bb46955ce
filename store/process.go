package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The process measurement's records (package process) live under their
// own prefix, in families the caller names:
//
//	prc/ <family> <key> -> value (the caller's encoding, JSON)
//
// <family> is a one-byte length and the name; the store knows nothing of
// the values.
var prefixProcess = []byte("prc/")

// Bounds of a process record's key parts.
const (
	maxProcessFamily = 32
	// MaxProcessKeyLen bounds a process record's key.
	MaxProcessKeyLen = 1024
)

func processFamily(family string) ([]byte, error) {
	if family == "" || len(family) > maxProcessFamily {
		return nil, fmt.Errorf("process family must be 1 to %d bytes, got %d", maxProcessFamily, len(family))
	}
	b := append(join(prefixProcess), byte(len(family)))
	return append(b, family...), nil
}

func processKey(family, key string) ([]byte, error) {
	p, err := processFamily(family)
	if err != nil {
		return nil, err
	}
	if key == "" || len(key) > MaxProcessKeyLen {
		return nil, fmt.Errorf("process key must be 1 to %d bytes, got %d", MaxProcessKeyLen, len(key))
	}
	return append(p, key...), nil
}

// PutProcess stores v under family and key, replacing what was there.
func (s *Store) PutProcess(family, key string, v []byte) error {
	k, err := processKey(family, key)
	if err != nil {
		return fmt.Errorf("put process record: %w", err)
	}
	return wrap("put process record "+family, s.write(func(txn *badger.Txn) error { return txn.Set(k, v) }))
}

// PutProcessMany stores vals[i] under family and keys[i], replacing what
// was there, in as few transactions as hold them (one fsync each, not one
// per key).
func (s *Store) PutProcessMany(family string, keys []string, vals [][]byte) error {
	if len(keys) != len(vals) {
		return fmt.Errorf("put process records: %d keys for %d values", len(keys), len(vals))
	}
	ks := make([][]byte, len(keys))
	for i, key := range keys {
		k, err := processKey(family, key)
		if err != nil {
			return fmt.Errorf("put process records: %w", err)
		}
		ks[i] = k
	}
	if err := s.acquire(); err != nil {
		return wrap("put process records "+family, err)
	}
	defer s.release()
	return wrap("put process records "+family, s.writeInOrder(len(ks), func(txn *badger.Txn, i int) error {
		return txn.Set(ks[i], vals[i])
	}))
}

// InsertProcess stores v under family and key, or returns ErrExists and
// stores nothing if that key is already stored.
func (s *Store) InsertProcess(family, key string, v []byte) error {
	k, err := processKey(family, key)
	if err != nil {
		return fmt.Errorf("insert process record: %w", err)
	}
	return wrap("insert process record "+family, s.insert(k, v))
}

// GetProcess returns the value under family and key, or ErrNotFound.
func (s *Store) GetProcess(family, key string) ([]byte, error) {
	k, err := processKey(family, key)
	if err != nil {
		return nil, fmt.Errorf("read process record: %w", err)
	}
	var out []byte
	err = s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, wrap("read process record "+family, err)
	}
	return out, nil
}

// ScanProcess calls fn with every key and value of family, in key order,
// until fn returns an error (returned as is). The value is only valid
// during the call.
func (s *Store) ScanProcess(family string, fn func(key string, v []byte) error) error {
	p, err := processFamily(family)
	if err != nil {
		return fmt.Errorf("scan process records: %w", err)
	}
	var fnErr error
	err = s.view(func(txn *badger.Txn) error {
		return scan{prefix: p}.each(txn, func(item *badger.Item) error {
			key := string(item.Key()[len(p):])
			return item.Value(func(v []byte) error {
				if e := fn(key, v); e != nil {
					fnErr = e
					return errStop
				}
				return nil
			})
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return wrap("scan process records "+family, err)
}

// PruneProcess deletes the records of family whose value victim picks,
// in batches of one transaction each, and returns how many it deleted.
func (s *Store) PruneProcess(family string, victim func(v []byte) bool) (int, error) {
	p, err := processFamily(family)
	if err != nil {
		return 0, fmt.Errorf("prune process records: %w", err)
	}
	n, err := s.prune(scan{prefix: p}, maxLazyDeletes, func(item *badger.Item) ([][]byte, bool, error) {
		var pick bool
		if err := item.Value(func(v []byte) error { pick = victim(v); return nil }); err != nil || !pick {
			return nil, false, err
		}
		return [][]byte{item.KeyCopy(nil)}, false, nil
	}, s.deleteKeys)
	return n, wrap("prune process records "+family, err)
}
