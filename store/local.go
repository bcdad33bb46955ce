package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/meshward/meshward/intel"
)

// NextSeq returns this node's next envelope sequence number: 1 on a fresh
// store, then one more than the last number returned, across restarts. The
// new value is committed before it is returned, so a number is never
// handed out twice (a crash may skip one). That holds across power loss
// only with Options.SyncWrites, as in DefaultOptions.
func (s *Store) NextSeq() (uint64, error) {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	var next uint64
	err := s.write(func(txn *badger.Txn) error {
		cur, err := getUint64(txn, keySeq)
		if err != nil {
			return err
		}
		if cur == ^uint64(0) {
			return errors.New("sequence numbers exhausted")
		}
		next = cur + 1
		return txn.Set(keySeq, appendUint64(nil, next))
	})
	if err != nil {
		return 0, wrap("next sequence number", err)
	}
	return next, nil
}

// maxLazyDeletes bounds how many expired decisions one Decisions call
// deletes, so that the deleting transaction stays small.
const maxLazyDeletes = 1024

// PutDecision stores a local decision, replacing any with the same ID.
func (s *Store) PutDecision(p intel.Policy) error {
	if p.ID == "" {
		return errors.New("put decision: empty policy ID")
	}
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("put decision %s: %w", p.ID, err)
	}
	return wrap("put decision "+p.ID, s.write(func(txn *badger.Txn) error { return txn.Set(decisionKey(p.ID), v) }))
}

// Decisions returns the local decisions active at now, ordered by ID.
// Expired ones are not returned and are deleted.
func (s *Store) Decisions(now time.Time) ([]intel.Policy, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release() // held until the expired ones are deleted
	var active []intel.Policy
	var expired [][]byte
	decode := jsonValue[intel.Policy]("decision")
	err := s.db.View(func(txn *badger.Txn) error {
		return scan{prefix: prefixDecision}.each(txn, func(item *badger.Item) error {
			p, err := decode(item)
			if err != nil {
				return err
			}
			if p.Active(now) {
				active = append(active, p)
			} else if len(expired) < maxLazyDeletes {
				expired = append(expired, item.KeyCopy(nil))
			}
			return nil
		})
	})
	if err != nil {
		return nil, wrap("read decisions", err)
	}
	if len(expired) > 0 {
		// Best effort: a decision that fails to go now goes next time,
		// and it is not returned either way. The check is repeated in
		// the transaction, so a decision renewed meanwhile survives.
		if err := s.deleteExpired(expired, now); err != nil {
			s.log.Warn("delete expired decisions", "count", len(expired), "err", err)
		}
	}
	return active, nil
}

func (s *Store) deleteExpired(keys [][]byte, now time.Time) error {
	return s.update(func(txn *badger.Txn) error {
		for _, k := range keys {
			item, err := txn.Get(k)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var p intel.Policy
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				return err
			}
			if p.Active(now) {
				continue
			}
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteDecision removes a local decision. Deleting one that is not
// stored is not an error.
func (s *Store) DeleteDecision(id string) error {
	if id == "" {
		return errors.New("delete decision: empty policy ID")
	}
	return wrap("delete decision "+id, s.write(func(txn *badger.Txn) error { return txn.Delete(decisionKey(id)) }))
}
