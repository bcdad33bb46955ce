package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The audit trail lives under its own prefix, in time order:
//
//	aud/ <time> <n> -> AuditEntry (JSON)
//
// <time> is the entry's Time encoded like every other time key; <n> is a
// four-byte counter that tells apart entries written at the same
// nanosecond.
var prefixAudit = []byte("aud/")

// AuditEntry is one change attempted through the admin API: who asked,
// what, when, and how it ended.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`            // token ID and name, "id (name)"
	Role   string    `json:"role,omitempty"`   // the role the actor held
	Action string    `json:"action"`           // e.g. "policy.block"
	Target string    `json:"target,omitempty"` // what it acted on: an indicator, a policy or token ID
	Detail string    `json:"detail,omitempty"` // parameters worth keeping (TTL, reason)
	Result string    `json:"result"`           // "ok", "denied" or "error"
	Error  string    `json:"error,omitempty"`
	Status int       `json:"status,omitempty"` // the HTTP status returned
	// Count is how many attempts the entry stands for when several are
	// recorded as one (failed authentications, rate-limited); 0 means one.
	Count int `json:"count,omitempty"`
}

func auditKey(at time.Time, n uint32) []byte {
	return binary.BigEndian.AppendUint32(appendTime(join(prefixAudit), at), n)
}

// maxAuditSameTime bounds how many entries may share one timestamp.
const maxAuditSameTime = 1 << 16

// AppendAudit adds an entry to the audit trail under e.Time, which the
// caller sets. Entries with equal times are all kept, in the order they
// were appended.
func (s *Store) AppendAudit(e AuditEntry) error {
	if e.Time.IsZero() {
		return errors.New("append audit entry: zero time")
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	err = s.write(func(txn *badger.Txn) error {
		for n := uint32(0); n < maxAuditSameTime; n++ {
			k := auditKey(e.Time, n)
			_, err := txn.Get(k)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return txn.Set(k, v)
			}
			if err != nil {
				return err
			}
		}
		return fmt.Errorf("more than %d entries at %s", maxAuditSameTime, e.Time.Format(time.RFC3339Nano))
	})
	if err != nil {
		return wrap("append audit entry", err)
	}
	return nil
}

// Audit returns up to limit audit entries, newest first. limit <= 0 means
// all of them.
func (s *Store) Audit(limit int) ([]AuditEntry, error) {
	return list(s, "audit trail", prefixAudit, true, limit, jsonValue[AuditEntry]("audit entry"))
}

// PruneAudit deletes the audit entries older than cutoff and returns how
// many it deleted. It deletes in batches of one transaction each, oldest
// first, so an interrupted prune leaves a trail with no gaps.
func (s *Store) PruneAudit(cutoff time.Time) (int, error) {
	end := appendTime(join(prefixAudit), cutoff)
	n, err := s.prune(scan{prefix: prefixAudit, keysOnly: true}, maxLazyDeletes, func(item *badger.Item) ([][]byte, bool, error) {
		if bytes.Compare(item.Key(), end) >= 0 {
			return nil, true, nil
		}
		return [][]byte{item.KeyCopy(nil)}, false, nil
	}, s.deleteKeys)
	return n, wrap("prune audit trail", err)
}
