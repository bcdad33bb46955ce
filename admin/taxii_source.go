package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/stix"
	"github.com/meshward/meshward/store"
)

// STIXSource is what the TAXII collections and the STIX export read: the
// reports, sightings and mesh-wide policies the node already serves on
// /v1/reports, /v1/sightings and /v1/policies. Node implements it.
type STIXSource interface {
	// Reports returns up to limit indicator reports, most recently
	// received first.
	Reports(ctx context.Context, limit int) ([]store.ReportRecord, error)
	// Sightings returns up to limit sightings, most recently received
	// first.
	Sightings(ctx context.Context, limit int) ([]store.SightingRecord, error)
	// MeshPolicyPage pages through the mesh-wide policies in ID order.
	MeshPolicyPage(after string, limit int, now time.Time) (page []intel.Policy, next string)
}

var _ STIXSource = Node(nil)

// stixScan is how many of the most recent reports, and of the most recent
// sightings, the TAXII collections and the STIX export are made of: each
// one read costs an envelope read and a signature check, and they are
// held at once. Policies are all served, a page at a time.
const stixScan = 10000

// policyPage is how many policies are read at a time.
const policyPage = 1000

// reportCache keeps the last read of the stixScan most recent reports
// (each read costs an envelope read and a signature check per report), so
// that the pages of one poll read them once. It is used while the newest
// report is the same and for at most reportCacheTTL, which bounds how
// long a pruned report may still be served.
type reportCache struct {
	mu   sync.Mutex
	at   time.Time // monotonic: when recs were read
	head string    // origin/seq of the newest report then, "" for none
	recs []store.ReportRecord
	// reads counts the full reads, for tests.
	reads int
}

const reportCacheTTL = 30 * time.Second

func recordKey(recs []store.ReportRecord) string {
	if len(recs) == 0 {
		return ""
	}
	return fmt.Sprintf("%s/%d", recs[0].Origin, recs[0].Seq)
}

// get returns the most recent reports, newest first; the slice is shared
// and must not be modified.
func (c *reportCache) get(ctx context.Context, src STIXSource) ([]store.ReportRecord, error) {
	head, err := src.Reports(ctx, 1)
	if err != nil {
		return nil, err
	}
	key := recordKey(head)
	c.mu.Lock()
	if c.recs != nil && c.head == key && time.Since(c.at) < reportCacheTTL {
		recs := c.recs
		c.mu.Unlock()
		return recs, nil
	}
	c.mu.Unlock()
	at := time.Now()
	recs, err := src.Reports(ctx, stixScan)
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []store.ReportRecord{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if at.After(c.at) {
		c.at, c.head, c.recs = at, recordKey(recs), recs
	}
	return recs, nil
}

// stixRecord is one record of a collection with the time the node added
// it (a report's or a sighting's arrival, a policy's creation); its
// objects are made only when asked for.
type stixRecord struct {
	added time.Time
	key   string // unique within the collection, ordered after added
	make  func() ([]stix.Object, error)
}

// objects are the record's objects, or nil (logged) for a record that
// cannot be turned into STIX.
func (s *Server) objects(rec stixRecord) []stix.Object {
	objs, err := rec.make()
	if err != nil {
		s.log.Debug("record left out of STIX", "key", rec.key, "err", err)
		return nil
	}
	return objs
}

// Collections of the TAXII API root.
const (
	colIndicators = "indicators"
	colSightings  = "sightings"
	colPolicies   = "policies"
)

// stixRecords calls fn with each record of a collection (in no particular
// order) until fn returns false or an error.
func (s *Server) stixRecords(ctx context.Context, col string, m *stix.Mapper, fn func(stixRecord) (bool, error)) error {
	switch col {
	case colIndicators:
		recs, err := s.stixReports.get(ctx, s.stixSrc)
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		for _, r := range recs {
			mk := func() ([]stix.Object, error) {
				return m.ReportObjects(stix.Report{Origin: r.Origin, Report: r.Report, Sent: r.Sent})
			}
			if ok, err := fn(stixRecord{added: taxiiTime(r.Received), key: fmt.Sprintf("%s/%020d", r.Origin, r.Seq), make: mk}); !ok || err != nil {
				return err
			}
		}
	case colSightings:
		recs, err := s.stixSrc.Sightings(ctx, stixScan)
		if err != nil {
			return fmt.Errorf("sightings: %w", err)
		}
		for _, r := range recs {
			mk := func() ([]stix.Object, error) {
				return m.SightingObjects(stix.Sighting{Origin: r.Origin, Sighting: r.Sighting, Sent: r.Sent})
			}
			if ok, err := fn(stixRecord{added: taxiiTime(r.Received), key: fmt.Sprintf("%s/%020d", r.Origin, r.Seq), make: mk}); !ok || err != nil {
				return err
			}
		}
	case colPolicies:
		now, after := s.now(), ""
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			page, next := s.stixSrc.MeshPolicyPage(after, policyPage, now)
			for _, p := range page {
				mk := func() ([]stix.Object, error) { return m.PolicyObjects(p) }
				if ok, err := fn(stixRecord{added: taxiiTime(p.CreatedAt), key: p.ID, make: mk}); !ok || err != nil {
					return err
				}
			}
			if next == "" || len(page) == 0 {
				return nil
			}
			after = next
		}
	default:
		return fmt.Errorf("%w: no collection %q", ErrNotFound, col)
	}
	return nil
}

// taxiiTime is a time as TAXII carries it: UTC, to the microsecond, so
// that a date_added handed out compares equal when it comes back.
func taxiiTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// taxiiItem is one object of a collection at its place in the
// collection's order: by date added, then by record and position.
type taxiiItem struct {
	added time.Time
	key   string
	obj   stix.Object
}

func (a taxiiItem) cmp(b taxiiItem) int {
	if c := a.added.Compare(b.added); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

// smallest keeps the n smallest values it is given, in bounded memory.
type smallest[T any] struct {
	n     int
	cmp   func(a, b T) int
	items []T
}

func (sm *smallest[T]) add(v T) {
	sm.items = append(sm.items, v)
	if len(sm.items) >= 2*sm.n+16 {
		sm.trim()
	}
}

func (sm *smallest[T]) trim() {
	slices.SortFunc(sm.items, sm.cmp)
	if len(sm.items) > sm.n {
		sm.items = sm.items[:sm.n]
	}
}

// result sorts and returns at most n values.
func (sm *smallest[T]) result() []T {
	sm.trim()
	return sm.items
}

// cmpRecords orders records as their objects are ordered.
func cmpRecords(a, b stixRecord) int {
	if c := a.added.Compare(b.added); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}
