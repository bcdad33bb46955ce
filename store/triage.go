package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The triage of detections (who a detection is assigned to, and the
// analysts' comments on it) lives beside the acknowledgements, one record
// per detection:
//
//	tri/ <detection id> -> TriageRecord (JSON)
//
// Like acknowledgements, a detection ID is the caller's business; a
// record changes by read-modify-write in one transaction, so concurrent
// comments are all kept.
var prefixTriage = []byte("tri/")

// Bounds on a detection's triage.
const (
	// MaxAssigneeLen bounds the name of the person a detection is
	// assigned to, in bytes.
	MaxAssigneeLen = 64
	// MaxCommentLen bounds one comment, in bytes.
	MaxCommentLen = 1024
	// MaxComments bounds the comments kept on one detection; a comment
	// beyond it is refused (ErrTriageFull), never one already kept
	// dropped.
	MaxComments = 100
)

// ErrTriageFull is returned by AddComment when the detection already has
// MaxComments comments.
var ErrTriageFull = errors.New("detection has the most comments allowed")

func triageKey(id string) []byte { return join(prefixTriage, []byte(id)) }

// TriageRecord is the triage of one detection.
type TriageRecord struct {
	Detection string `json:"detection"`
	// Assignee is the person the detection is assigned to ("" for none),
	// by whom (the token's name) and when.
	Assignee   string    `json:"assignee,omitempty"`
	AssignedBy string    `json:"assigned_by,omitempty"`
	AssignedAt time.Time `json:"assigned_at,omitzero"`
	// Comments, oldest first.
	Comments []CommentRecord `json:"comments,omitempty"`
}

// CommentRecord is one analyst's comment on a detection.
type CommentRecord struct {
	By      string    `json:"by"`                 // the token's name
	TokenID string    `json:"token_id,omitempty"` // the token's ID
	Text    string    `json:"text"`
	At      time.Time `json:"at"`
}

func checkTriageID(id string) error {
	if id == "" || len(id) > MaxAckIDLen {
		return fmt.Errorf("detection id must be 1 to %d bytes, got %d", MaxAckIDLen, len(id))
	}
	return nil
}

// Assign records that detection id is assigned to assignee ("" clears
// the assignment) by by at at, and returns the record as it now is.
func (s *Store) Assign(id, assignee, by string, at time.Time) (TriageRecord, error) {
	switch {
	case len(assignee) > MaxAssigneeLen:
		return TriageRecord{}, fmt.Errorf("assign detection %s: assignee must be at most %d bytes, got %d", id, MaxAssigneeLen, len(assignee))
	case by == "":
		return TriageRecord{}, fmt.Errorf("assign detection %s: by is required", id)
	case at.IsZero():
		return TriageRecord{}, fmt.Errorf("assign detection %s: zero time", id)
	}
	return s.changeTriage(id, "assign detection", func(r *TriageRecord) error {
		r.Assignee, r.AssignedBy, r.AssignedAt = assignee, by, at
		return nil
	})
}

// AddComment appends a comment to detection id and returns the record as
// it now is; ErrTriageFull when it has MaxComments already.
func (s *Store) AddComment(id string, c CommentRecord) (TriageRecord, error) {
	switch {
	case c.Text == "" || len(c.Text) > MaxCommentLen:
		return TriageRecord{}, fmt.Errorf("comment on detection %s: text must be 1 to %d bytes, got %d", id, MaxCommentLen, len(c.Text))
	case c.By == "":
		return TriageRecord{}, fmt.Errorf("comment on detection %s: by is required", id)
	case c.At.IsZero():
		return TriageRecord{}, fmt.Errorf("comment on detection %s: zero time", id)
	}
	return s.changeTriage(id, "comment on detection", func(r *TriageRecord) error {
		if len(r.Comments) >= MaxComments {
			return fmt.Errorf("%w (%d)", ErrTriageFull, MaxComments)
		}
		r.Comments = append(r.Comments, c)
		return nil
	})
}

// changeTriage reads the record of id (a fresh one when there is none),
// lets change modify it and writes it back, in one transaction.
func (s *Store) changeTriage(id, what string, change func(*TriageRecord) error) (TriageRecord, error) {
	if err := checkTriageID(id); err != nil {
		return TriageRecord{}, fmt.Errorf("%s: %w", what, err)
	}
	var out TriageRecord
	err := s.write(func(txn *badger.Txn) error {
		r := TriageRecord{Detection: id}
		item, err := txn.Get(triageKey(id))
		switch {
		case err == nil:
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("decode triage of %s: %w", id, err)
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		if err := change(&r); err != nil {
			return err
		}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		out = r
		return txn.Set(triageKey(id), v)
	})
	if err != nil {
		return TriageRecord{}, wrap(what+" "+id, err)
	}
	return out, nil
}

// TriageFor returns the triage records of those of ids that have one, by
// detection ID, read in one transaction. It accepts at most MaxAckLookup
// IDs; IDs no detection could have are skipped.
func (s *Store) TriageFor(ids []string) (map[string]TriageRecord, error) {
	if len(ids) > MaxAckLookup {
		return nil, fmt.Errorf("read triage: %d ids, at most %d", len(ids), MaxAckLookup)
	}
	out := make(map[string]TriageRecord)
	err := s.view(func(txn *badger.Txn) error {
		for _, id := range ids {
			if checkTriageID(id) != nil {
				continue
			}
			item, err := txn.Get(triageKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var r TriageRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("decode triage of %s: %w", id, err)
			}
			out[id] = r
		}
		return nil
	})
	if err != nil {
		return nil, wrap("read triage", err)
	}
	return out, nil
}

// PruneTriage deletes the triage of detections last changed before
// cutoff (their last comment or assignment) and returns how many it
// deleted; like PruneAcks, a caller prunes with the sightings' retention.
func (s *Store) PruneTriage(cutoff time.Time) (int, error) {
	decode := jsonValue[TriageRecord]("triage")
	n, err := s.prune(scan{prefix: prefixTriage}, maxLazyDeletes, func(item *badger.Item) ([][]byte, bool, error) {
		r, err := decode(item)
		if err != nil {
			return nil, false, err
		}
		last := r.AssignedAt
		for _, c := range r.Comments {
			if c.At.After(last) {
				last = c.At
			}
		}
		if !last.Before(cutoff) {
			return nil, false, nil
		}
		return [][]byte{item.KeyCopy(nil)}, false, nil
	}, s.deleteKeys)
	return n, wrap("prune triage", err)
}
