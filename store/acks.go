package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Acknowledgements of detections live under their own prefix, one per
// detection:
//
//	ack/ <detection id> -> AckRecord (JSON)
//
// A detection ID is the caller's business (the admin API derives it from
// the sighting's origin and sequence number); the store only keeps one
// record per ID, so that whether a detection is acknowledged is one key
// read.
var prefixAck = []byte("ack/")

// Bounds on an acknowledgement.
const (
	// MaxAckIDLen bounds a detection ID.
	MaxAckIDLen = 64
	// MaxAckNoteLen bounds a note, in bytes.
	MaxAckNoteLen = 1024
	// MaxAckLookup bounds how many IDs one AcksFor call may ask for.
	MaxAckLookup = 10000
)

func ackKey(id string) []byte { return join(prefixAck, []byte(id)) }

// AckRecord is one detection acknowledged by an analyst: which detection,
// who (the token's name and ID), an optional note, and when.
type AckRecord struct {
	Detection string    `json:"detection"`
	By        string    `json:"by"`                 // the token's name
	TokenID   string    `json:"token_id,omitempty"` // the token's ID
	Note      string    `json:"note,omitempty"`
	At        time.Time `json:"at"`
}

func (a AckRecord) validate() error {
	var errs []error
	if a.Detection == "" || len(a.Detection) > MaxAckIDLen {
		errs = append(errs, fmt.Errorf("detection id must be 1 to %d bytes, got %d", MaxAckIDLen, len(a.Detection)))
	}
	if a.By == "" {
		errs = append(errs, errors.New("by is required"))
	}
	if len(a.Note) > MaxAckNoteLen {
		errs = append(errs, fmt.Errorf("note must be at most %d bytes, got %d", MaxAckNoteLen, len(a.Note)))
	}
	if a.At.IsZero() {
		errs = append(errs, errors.New("zero time"))
	}
	return errors.Join(errs...)
}

// CreateAck stores the acknowledgement of a detection. It returns
// ErrExists, and stores nothing, when that detection is already
// acknowledged: the first acknowledgement stands until DeleteAck.
func (s *Store) CreateAck(a AckRecord) error {
	if err := a.validate(); err != nil {
		return fmt.Errorf("acknowledge detection: %w", err)
	}
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("acknowledge detection %s: %w", a.Detection, err)
	}
	return wrap("acknowledge detection "+a.Detection, s.insert(ackKey(a.Detection), v))
}

// Ack returns the acknowledgement of a detection, or ErrNotFound.
func (s *Store) Ack(id string) (AckRecord, error) {
	if id == "" || len(id) > MaxAckIDLen {
		return AckRecord{}, fmt.Errorf("read acknowledgement: %w", ErrNotFound)
	}
	m, err := s.AcksFor([]string{id})
	if err != nil {
		return AckRecord{}, err
	}
	a, ok := m[id]
	if !ok {
		return AckRecord{}, fmt.Errorf("read acknowledgement of %s: %w", id, ErrNotFound)
	}
	return a, nil
}

// AcksFor returns the acknowledgements of those of ids that are
// acknowledged, by detection ID, read in one transaction with one key
// lookup per ID. It accepts at most MaxAckLookup IDs; IDs no detection
// could have are skipped.
func (s *Store) AcksFor(ids []string) (map[string]AckRecord, error) {
	if len(ids) > MaxAckLookup {
		return nil, fmt.Errorf("read acknowledgements: %d ids, at most %d", len(ids), MaxAckLookup)
	}
	out := make(map[string]AckRecord)
	err := s.view(func(txn *badger.Txn) error {
		for _, id := range ids {
			if id == "" || len(id) > MaxAckIDLen {
				continue
			}
			item, err := txn.Get(ackKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var a AckRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &a) }); err != nil {
				return fmt.Errorf("decode acknowledgement %s: %w", id, err)
			}
			out[id] = a
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read acknowledgements", err)
	}
	return out, nil
}

// Acks returns up to limit acknowledgements, ordered by detection ID.
// limit <= 0 means all of them.
func (s *Store) Acks(limit int) ([]AckRecord, error) {
	return list(s, "acknowledgements", prefixAck, false, limit, jsonValue[AckRecord]("acknowledgement"))
}

// DeleteAck removes the acknowledgement of a detection; it returns
// ErrNotFound if there is none.
func (s *Store) DeleteAck(id string) error {
	if id == "" || len(id) > MaxAckIDLen {
		return fmt.Errorf("delete acknowledgement: %w", ErrNotFound)
	}
	return wrap("delete acknowledgement of "+id, s.remove(ackKey(id)))
}

// PruneAcks deletes the acknowledgements made before cutoff and returns
// how many it deleted, in batches of one transaction each. Acknowledgements
// outlive nothing useful once their detections have been pruned, so a
// caller prunes them with the same retention.
func (s *Store) PruneAcks(cutoff time.Time) (int, error) {
	decode := jsonValue[AckRecord]("acknowledgement")
	n, err := s.prune(scan{prefix: prefixAck}, maxLazyDeletes, func(item *badger.Item) ([][]byte, bool, error) {
		a, err := decode(item)
		if err != nil || !a.At.Before(cutoff) {
			return nil, false, err
		}
		return [][]byte{item.KeyCopy(nil)}, false, nil
	}, s.deleteKeys)
	return n, wrap("prune acknowledgements", err)
}
