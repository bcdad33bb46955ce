package admin

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/meshward/meshward/store"
)

// detections returns this node's own sightings among the most recent
// iocScan, newest first, with their IDs.
func (s *Server) detections(c *call) ([]Detection, error) {
	recs, err := s.sightingSvc.Sightings(c.r.Context(), iocScan)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	self := s.statusSvc.ID()
	names := s.attackNamer()
	var out []Detection
	for _, r := range recs {
		if r.Origin == self {
			out = append(out, Detection{ID: DetectionID(r.Origin, r.Seq), Sighting: sightingFrom(r)})
			names.name(&out[len(out)-1].Sighting)
		}
	}
	return out, nil
}

// withAcks fills in the acknowledgements of ds.
func (s *Server) withAcks(ds []Detection) error {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	acks, err := s.ackStore.AcksFor(ids)
	if err != nil {
		return err
	}
	for i := range ds {
		if a, ok := acks[ds[i].ID]; ok {
			ds[i].Acknowledged, ds[i].Ack = true, ackFrom(a)
		}
	}
	return nil
}

// getDetections lists this node's own sightings among the most recent
// ones, each with whether and by whom it was acknowledged; the
// acknowledged query parameter (true or false) keeps only those that are,
// or are not.
func getDetections(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	want, err := boolParam(c, "acknowledged")
	if err != nil {
		return nil, err
	}
	ds, err := s.detections(c)
	if err != nil {
		return nil, err
	}
	if want == nil && len(ds) > n {
		ds = ds[:n]
	}
	if err := s.withAcks(ds); err != nil {
		return nil, err
	}
	if want != nil {
		ds = slices.DeleteFunc(ds, func(d Detection) bool { return d.Acknowledged != *want })
		if len(ds) > n {
			ds = ds[:n]
		}
	}
	if err := s.withTriage(ds); err != nil {
		return nil, err
	}
	return nonNil(ds), nil
}

// detection returns the detection with the given ID among the most recent
// ones, or ErrNotFound.
func (s *Server) detection(c *call, id string) (Detection, error) {
	ds, err := s.detections(c)
	if err != nil {
		return Detection{}, err
	}
	for _, d := range ds {
		if d.ID == id {
			return d, nil
		}
	}
	return Detection{}, fmt.Errorf("detection %s: %w", id, ErrNotFound)
}

// postAck acknowledges a detection, once: a second acknowledgement is a
// conflict that names the first.
func postAck(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	var req AckRequest
	if err := decodeOptional(c, &req); err != nil {
		return nil, err
	}
	if len(req.Note) > store.MaxAckNoteLen || !utf8.ValidString(req.Note) {
		return nil, fmt.Errorf("%w: note: want at most %d bytes of UTF-8", ErrInvalid, store.MaxAckNoteLen)
	}
	c.detail = fmt.Sprintf("note=%q", req.Note)
	d, err := s.detection(c, id)
	if err != nil {
		return nil, err
	}
	rec := store.AckRecord{Detection: id, By: c.who.name, TokenID: c.who.id, Note: req.Note, At: s.now().UTC()}
	if err := s.ackStore.CreateAck(rec); err != nil {
		if errors.Is(err, store.ErrExists) {
			if prev, perr := s.ackStore.Ack(id); perr == nil {
				return nil, fmt.Errorf("%w: detection %s already acknowledged by %s at %s",
					ErrRefused, id, prev.By, prev.At.Format(time.RFC3339))
			}
		}
		return nil, fmt.Errorf("acknowledge detection %s: %w", id, err)
	}
	d.Acknowledged, d.Ack = true, ackFrom(rec)
	return d, nil
}

// deleteAck withdraws the acknowledgement of a detection.
func deleteAck(s *Server, c *call) (any, error) {
	id := c.r.PathValue("id")
	c.target = id
	prev, err := s.ackStore.Ack(id)
	if err != nil {
		return nil, fmt.Errorf("acknowledgement of detection %s: %w", id, err)
	}
	c.detail = fmt.Sprintf("was by=%s note=%q", prev.By, prev.Note)
	if err := s.ackStore.DeleteAck(id); err != nil {
		return nil, fmt.Errorf("withdraw acknowledgement of detection %s: %w", id, err)
	}
	return map[string]string{"unacknowledged": id}, nil
}
