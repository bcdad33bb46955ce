package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Automatic quarantine, the proposing side. When one of this node's
// rules that says response: quarantine detects a host, and a zone of the
// mesh holding that host lists the rule in its auto_quarantine, the node
// proposes the host's quarantine (consensus.CmdQuarantine) carrying its
// own signed sighting, and, when the zone needs sightings of several
// members, the latest sighting of each other member by one of the zone's
// rules within the mesh's window (as the store holds them). The FSM
// checks all of it again from the entry alone. At most one proposal per
// host is in flight, and at most maxQuarantineInflight in all: past it a
// detection is dropped and counted (the next one brings it back).
//
// A detection of a host in no zone, or in zones that do not list the
// rule, is counted and changes nothing more: the sighting still goes to
// the mesh as any other.

// maxQuarantineInflight bounds the quarantine proposals in flight.
const maxQuarantineInflight = 64

// quarantineMesh is what automatic quarantine needs of consensus.
type quarantineMesh interface {
	AutoQuarantine(host netip.Addr, rule string) (string, intel.AutoQuarantine, bool)
	Quarantined(host netip.Addr, now time.Time) (intel.Quarantine, bool)
	ProposeQuarantine(ctx context.Context, host netip.Addr, ttl time.Duration, proofs [][]byte) error
	IsMember(nodeID string) bool
	Rules() consensus.Rules
}

var _ quarantineMesh = (*consensus.Consensus)(nil)

// QuarantineStats counts what automatic quarantine did on this node.
type QuarantineStats struct {
	// Proposed quarantines, of which Committed were accepted by the mesh
	// (or found a longer one in force), Refused refused by its FSM
	// (logged with the reason), and Failed not committed (no quorum,
	// time out).
	Proposed, Committed, Refused, Failed uint64
	// NotAllowed are detections by a quarantine rule of a host that no
	// zone lets the rule quarantine; Current those of a host already
	// quarantined for longer; Dropped those past the bound of
	// proposals in flight or with a host already being proposed.
	NotAllowed, Current, Dropped uint64
}

// quarantiner proposes automatic quarantines; its zero value is ready.
type quarantiner struct {
	mu       sync.Mutex
	inflight map[netip.Addr]bool

	proposed, committed, refused, failed atomic.Uint64
	notAllowed, current, dropped         atomic.Uint64
}

func (q *quarantiner) stats() QuarantineStats {
	return QuarantineStats{Proposed: q.proposed.Load(), Committed: q.committed.Load(), Refused: q.refused.Load(), Failed: q.failed.Load(),
		NotAllowed: q.notAllowed.Load(), Current: q.current.Load(), Dropped: q.dropped.Load()}
}

// QuarantineStats reports what automatic quarantine did on this node.
func (n *Node) QuarantineStats() QuarantineStats { return n.quar.stats() }

// quarantineRule reports whether the rule in force named name asks for a
// quarantine.
func (n *Node) quarantineRule(name string) bool {
	return slices.ContainsFunc(n.deps.Detectors.rules(), func(r detectors.Rule) bool {
		return r.Name == name && r.Response == detectors.ResponseQuarantine
	})
}

// consider is called with each of this node's detections, once its
// sighting is stored as envelope seq.
func (q *quarantiner) consider(n *Node, s intel.Sighting, seq uint64, now time.Time) {
	if s.Partial || !n.quarantineRule(s.Detector) {
		return
	}
	mesh, ok := any(n.deps.Consensus).(quarantineMesh)
	if !ok || n.deps.Consensus == nil {
		return
	}
	pfx, ok := s.Indicator.Prefix()
	if !ok || !pfx.IsSingleIP() {
		return
	}
	host := pfx.Addr()
	zone, aq, ok := mesh.AutoQuarantine(host, s.Detector)
	if !ok {
		q.notAllowed.Add(1)
		n.log.Debug("quarantine rule fired on a host no zone lets it quarantine", "host", host, "rule", s.Detector)
		return
	}
	ttl := aq.MaxTTL()
	if cur, ok := mesh.Quarantined(host, now); ok && (cur.ExpiresAt.IsZero() || !cur.ExpiresAt.Before(now.Add(ttl))) {
		q.current.Add(1)
		return
	}
	q.mu.Lock()
	if q.inflight == nil {
		q.inflight = map[netip.Addr]bool{}
	}
	if q.inflight[host] || len(q.inflight) >= maxQuarantineInflight {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	q.inflight[host] = true
	q.mu.Unlock()
	done := func() {
		q.mu.Lock()
		delete(q.inflight, host)
		q.mu.Unlock()
	}
	proofs, err := q.proofs(n.deps.Store, mesh, n.deps.ID, s.Indicator, seq, aq, now)
	if err != nil {
		done()
		q.failed.Add(1)
		n.log.Error("gather the proofs of a quarantine", "host", host, "err", err)
		return
	}
	q.proposed.Add(1)
	n.group.Go(func(ctx context.Context) {
		defer done()
		ctx, cancel := context.WithTimeout(ctx, proposeTimeout)
		defer cancel()
		err := mesh.ProposeQuarantine(ctx, host, ttl, proofs)
		switch {
		case err == nil:
			q.committed.Add(1)
			n.log.Info("host quarantined mesh-wide", "host", host, "zone", zone, "rule", s.Detector, "ttl", ttl, "proofs", len(proofs))
		case errors.Is(err, consensus.ErrRefused), errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrInvalidCommand):
			q.refused.Add(1)
			n.log.Warn("quarantine refused", "host", host, "rule", s.Detector, "reason", consensus.RefusalReason(err), "err", err)
		default:
			q.failed.Add(1)
			if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
				n.log.Error("propose quarantine", "host", host, "err", err)
			}
		}
	})
}

// proofs are this node's sighting (own, seq) and, when the zone needs
// more than one member, the latest full sighting of each other member by
// one of the zone's rules within the mesh's window.
func (q *quarantiner) proofs(st *store.Store, mesh quarantineMesh, self string, ind intel.Indicator, seq uint64, aq intel.AutoQuarantine, now time.Time) ([][]byte, error) {
	own, err := st.GetEnvelope(self, seq)
	if err != nil {
		return nil, err
	}
	proofs := [][]byte{own}
	if aq.Nodes() <= 1 {
		return proofs, nil
	}
	window := mesh.Rules().Window
	recs, err := st.SightingsFor(ind, now.Add(-window+proofMargin))
	if err != nil {
		return nil, err
	}
	latest := map[string]store.SightingRecord{}
	for _, r := range recs {
		if r.Origin == self || r.Sighting.Partial || !aq.Allows(r.Sighting.Detector) || !mesh.IsMember(r.Origin) {
			continue
		}
		if !r.Sent.IsZero() && (r.Sent.Before(now.Add(-window+proofMargin)) || r.Sent.After(now.Add(proofMargin))) {
			continue
		}
		if old, ok := latest[r.Origin]; !ok || r.Sighting.LastSeen.After(old.Sighting.LastSeen) {
			latest[r.Origin] = r
		}
	}
	origins := make([]string, 0, len(latest))
	for o := range latest {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	for _, o := range origins {
		raw, err := st.GetEnvelope(o, latest[o].Seq)
		if err != nil {
			return nil, err
		}
		proofs = append(proofs, raw)
	}
	return proofs, nil
}

// quarantineCollector exposes QuarantineStats as
// meshward_quarantine_auto_total{result}.
type quarantineCollector struct{ q *quarantiner }

var quarantineAuto = prometheus.NewDesc("meshward_quarantine_auto_total",
	"Automatic quarantines on this node's detections, by result: proposed, committed, refused (by the mesh's FSM), failed (not committed), not_allowed (no zone lets the rule quarantine the host), current (already quarantined longer), dropped (one in flight for the host, or too many).",
	[]string{"result"}, nil)

func (c *quarantineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- quarantineAuto }

func (c *quarantineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.q.stats()
	for _, r := range []struct {
		name string
		v    uint64
	}{
		{"proposed", s.Proposed}, {"committed", s.Committed}, {"refused", s.Refused}, {"failed", s.Failed},
		{"not_allowed", s.NotAllowed}, {"current", s.Current}, {"dropped", s.Dropped},
	} {
		ch <- prometheus.MustNewConstMetric(quarantineAuto, prometheus.CounterValue, float64(r.v), r.name)
	}
}
