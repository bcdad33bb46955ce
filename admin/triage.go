package admin

// The triage of detections beyond acknowledging them: assigning one to a
// person and commenting on it (responder, audited), kept by the store
// beside the acknowledgements and shown with each detection.

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meshward/meshward/store"
)

// TriageStore keeps the assignments of and comments on detections;
// *store.Store implements it. A Store that does not leaves the triage
// routes answering 503.
type TriageStore interface {
	// Assign sets (or, with "", clears) who a detection is assigned to.
	Assign(id, assignee, by string, at time.Time) (store.TriageRecord, error)
	// AddComment appends a comment, or returns store.ErrTriageFull.
	AddComment(id string, c store.CommentRecord) (store.TriageRecord, error)
	// TriageFor returns the triage of those of ids that have one.
	TriageFor(ids []string) (map[string]store.TriageRecord, error)
}

var _ TriageStore = (*store.Store)(nil)

// Assignment says who a detection is assigned to, by whom and when.
type Assignment struct {
	Assignee string    `json:"assignee"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
}

// Comment is one analyst's comment on a detection.
type Comment struct {
	By      string    `json:"by"`
	TokenID string    `json:"token_id,omitempty"`
	Text    string    `json:"text"`
	At      time.Time `json:"at"`
}

// AssignRequest assigns a detection to a person ("" clears it).
type AssignRequest struct {
	Assignee string `json:"assignee"`
}

// CommentRequest comments on a detection.
type CommentRequest struct {
	Text string `json:"text"`
}

// applyTriage sets d's assignment and comments from r.
func applyTriage(d *Detection, r store.TriageRecord) {
	d.Assigned = nil
	if r.Assignee != "" {
		d.Assigned = &Assignment{Assignee: r.Assignee, By: r.AssignedBy, At: r.AssignedAt}
	}
	d.Comments = nil
	for _, c := range r.Comments {
		d.Comments = append(d.Comments, Comment{By: c.By, TokenID: c.TokenID, Text: c.Text, At: c.At})
	}
}

// withTriage fills in the assignments and comments of ds.
func (s *Server) withTriage(ds []Detection) error {
	if s.triageStore == nil || len(ds) == 0 {
		return nil
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	m, err := s.triageStore.TriageFor(ids)
	if err != nil {
		return err
	}
	for i := range ds {
		if r, ok := m[ds[i].ID]; ok {
			applyTriage(&ds[i], r)
		}
	}
	return nil
}

// triageTarget reads the detection a triage route acts on, with its
// acknowledgement.
func (s *Server) triageTarget(c *call) (Detection, error) {
	id := c.r.PathValue("id")
	c.target = id
	if s.triageStore == nil {
		return Detection{}, fmt.Errorf("%w: this node's store keeps no triage", ErrUnavailable)
	}
	d, err := s.detection(c, id)
	if err != nil {
		return Detection{}, err
	}
	ds := []Detection{d}
	if err := s.withAcks(ds); err != nil {
		return Detection{}, err
	}
	return ds[0], nil
}

// postAssign assigns a detection to a person, or with an empty assignee
// clears its assignment.
func postAssign(s *Server, c *call) (any, error) {
	var req AssignRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	req.Assignee = strings.TrimSpace(req.Assignee)
	if req.Assignee != "" && (len(req.Assignee) > store.MaxAssigneeLen || !validName.MatchString(req.Assignee)) {
		return nil, fmt.Errorf("%w: assignee %q: want 1 to %d letters, digits, '.', '_', '@' or '-'", ErrInvalid, req.Assignee, store.MaxAssigneeLen)
	}
	c.detail = "assignee=" + req.Assignee
	d, err := s.triageTarget(c)
	if err != nil {
		return nil, err
	}
	r, err := s.triageStore.Assign(d.ID, req.Assignee, c.who.name, s.now().UTC())
	if err != nil {
		return nil, fmt.Errorf("assign detection %s: %w", d.ID, err)
	}
	applyTriage(&d, r)
	return d, nil
}

// postComment adds a comment to a detection.
func postComment(s *Server, c *call) (any, error) {
	var req CommentRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	req.Text = strings.TrimSpace(req.Text)
	if req.Text == "" || len(req.Text) > store.MaxCommentLen || !utf8.ValidString(req.Text) {
		return nil, fmt.Errorf("%w: text: want 1 to %d bytes of UTF-8", ErrInvalid, store.MaxCommentLen)
	}
	c.detail = fmt.Sprintf("text=%q", req.Text)
	d, err := s.triageTarget(c)
	if err != nil {
		return nil, err
	}
	r, err := s.triageStore.AddComment(d.ID, store.CommentRecord{By: c.who.name, TokenID: c.who.id, Text: req.Text, At: s.now().UTC()})
	if err != nil {
		if errors.Is(err, store.ErrTriageFull) {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return nil, fmt.Errorf("comment on detection %s: %w", d.ID, err)
	}
	applyTriage(&d, r)
	return d, nil
}
