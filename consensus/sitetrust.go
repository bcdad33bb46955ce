package consensus

import (
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/risk"
)

// Site trust: how much the mesh believes each member's sightings, from 0
// to TrustMax. A member starts fully trusted. When an operator overturns
// an automatic block (an allow that drops it, or a revoke of it), every
// member whose signed sighting proved that block (the signers held as the
// block's evidence, from its log entry) loses TrustPenalty; trust then
// recovers by TrustRecoveryPerDay of log time, back to TrustMax. Time is
// the FSM's clock (the entries' timestamps), never the local clock, so
// every replica holds the same trust at the same index; the state is in
// snapshots. Trust weighs a site's sightings in the risk score
// (intel/risk) and so in the MinRisk check of automatic blocks.
const (
	TrustMax            = risk.MaxTrust
	TrustPenalty        = 200
	TrustRecoveryPerDay = 50
)

// trustRecord is a member's trust as of At; it recovers from there.
// Members without a record are fully trusted.
type trustRecord struct {
	Trust int       `json:"trust"`
	At    time.Time `json:"at"`
}

// trustAt is the trust of a record at now: Trust plus the recovery since
// At, at most TrustMax. Integer seconds: the same on every replica.
func (r trustRecord) trustAt(now time.Time) int {
	el := int64(now.Sub(r.At) / time.Second)
	if el <= 0 {
		return r.Trust
	}
	rec := el * TrustRecoveryPerDay / 86400
	if rec >= TrustMax {
		return TrustMax
	}
	return min(TrustMax, r.Trust+int(rec))
}

// siteTrustCounts counts what site trust did on this node's FSM.
type siteTrustCounts struct {
	overturned atomic.Uint64 // automatic blocks overturned by an operator
	penalized  atomic.Uint64 // penalties applied (one per signer per block)
}

// siteTrust is a member's trust at now. Caller holds the lock.
func (f *fsm) siteTrust(id string, now time.Time) int {
	r, ok := f.trust[id]
	if !ok {
		return TrustMax
	}
	return r.trustAt(now)
}

// overturn is called, inside Apply, before an operator's allow or revoke
// deletes the block with this ID: if it was an automatic block (it holds
// the signers of its proof as evidence), each distinct signer loses
// TrustPenalty as of now. Records that have recovered fully are dropped
// on the way, so that the map holds only members who lost trust lately.
func (f *fsm) overturn(id uint64, now time.Time) {
	r, ok := f.policies.get(id)
	if !ok || r.actionOf() != intel.ActionBlock {
		return
	}
	ev := r.evidence()
	if len(ev) == 0 {
		return
	}
	signers := make([]string, 0, len(ev))
	for _, e := range ev {
		signers = append(signers, e.Origin)
	}
	slices.Sort(signers)
	signers = slices.Compact(signers)
	for sid, rec := range f.trust {
		if rec.trustAt(now) >= TrustMax {
			delete(f.trust, sid)
		}
	}
	for _, s := range signers {
		f.trust[s] = trustRecord{Trust: max(0, f.siteTrust(s, now)-TrustPenalty), At: now}
	}
	f.trustCounts.overturned.Add(1)
	f.trustCounts.penalized.Add(uint64(len(signers)))
}

// overturnID is overturn for a policy ID as a string.
func (f *fsm) overturnID(id string, now time.Time) {
	if n, ok := parseID(id); ok {
		f.overturn(n, now)
	}
}

// SiteTrust returns a member's trust (0..TrustMax) at the FSM's clock:
// TrustMax for a member that never lost any, or for an unknown ID.
func (c *Consensus) SiteTrust(id string) int {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.siteTrust(id, c.fsm.clock)
}

// SiteTrustAt is SiteTrust for several members at once, under one hold of
// the lock, with the FSM's clock it was computed at.
func (c *Consensus) SiteTrustAt(ids []string) (map[string]int, time.Time) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	out := make(map[string]int, len(ids))
	for _, id := range ids {
		out[id] = c.fsm.siteTrust(id, c.fsm.clock)
	}
	return out, c.fsm.clock
}

// SiteTrustCounts returns how many automatic blocks this node's FSM saw
// overturned by an operator, and how many signer penalties that made.
func (c *Consensus) SiteTrustCounts() (overturned, penalized uint64) {
	return c.fsm.trustCounts.overturned.Load(), c.fsm.trustCounts.penalized.Load()
}

// trustSnapshot lists the trust records in ID order, for snapshots.
type trustSnapshotRecord struct {
	ID string `json:"id"`
	trustRecord
}

func sortedTrust(m map[string]trustRecord) []trustSnapshotRecord {
	out := make([]trustSnapshotRecord, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, trustSnapshotRecord{ID: id, trustRecord: m[id]})
	}
	return out
}

// restoreTrust rebuilds the map from a snapshot's records, refusing a
// value out of range.
func restoreTrust(recs []trustSnapshotRecord) (map[string]trustRecord, error) {
	out := make(map[string]trustRecord, len(recs))
	for i, r := range recs {
		if r.ID == "" || r.Trust < 0 || r.Trust > TrustMax {
			return nil, fmt.Errorf("site_trust[%d]: id %q trust %d: want an id and 0..%d", i, r.ID, r.Trust, TrustMax)
		}
		out[r.ID] = r.trustRecord
	}
	return out, nil
}

// --- the risk threshold ---------------------------------------------------

// proofRisk scores an automatic block from its entry alone: the proofs'
// sightings (severity, confidence, technique, last seen), each signer's
// trust in this FSM at now, and now, the entry's time. Tactics, reports,
// CVEs and earlier blocks are not in the entry and not part of it: they
// are neutral or zero here and enter the score the node displays only.
func (f *fsm) proofRisk(proven []provenSighting, now time.Time) risk.Result {
	in := risk.Inputs{Now: now, Sightings: make([]risk.Sighting, 0, len(proven))}
	for _, p := range proven {
		in.Sightings = append(in.Sightings, risk.Sighting{Site: p.origin, Trust: f.siteTrust(p.origin, now),
			Severity: p.s.Severity, Confidence: p.s.Confidence, Technique: p.s.Technique, Seen: p.s.LastSeen})
	}
	return risk.Score(in)
}

// provenSighting is one opened proof: its signer and its sighting.
type provenSighting struct {
	origin string
	s      intel.Sighting
}

// checkMinRisk refuses an automatic block whose proof scores below
// Rules.MinRisk (0: off).
func (f *fsm) checkMinRisk(t CommandType, ind intel.Indicator, proven []provenSighting, now time.Time) *RefusalError {
	if f.rules.MinRisk <= 0 {
		return nil
	}
	r := f.proofRisk(proven, now)
	if r.Score >= f.rules.MinRisk {
		return nil
	}
	return refuse(t, "low_risk", ErrRefused, "the proof of %s scores %d, the mesh requires %d", ind, r.Score, f.rules.MinRisk)
}

var (
	overturnedDesc = prometheus.NewDesc("meshward_consensus_blocks_overturned_total",
		"Automatic blocks this node's FSM saw overturned by an operator's allow or revoke (each costs its proof's signers trust).", nil, nil)
	penaltiesDesc = prometheus.NewDesc("meshward_consensus_site_trust_penalties_total",
		"Site trust penalties this node's FSM applied: one per distinct signer of an overturned automatic block.", nil, nil)
	lowTrustDesc = prometheus.NewDesc("meshward_consensus_sites_below_full_trust",
		"Members whose trust is below full at the FSM's clock.", nil, nil)
)

// siteTrustCollector exposes the site trust counters.
type siteTrustCollector struct{ f *fsm }

func (c siteTrustCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- overturnedDesc
	ch <- penaltiesDesc
	ch <- lowTrustDesc
}

func (c siteTrustCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(overturnedDesc, prometheus.CounterValue, float64(c.f.trustCounts.overturned.Load()))
	ch <- prometheus.MustNewConstMetric(penaltiesDesc, prometheus.CounterValue, float64(c.f.trustCounts.penalized.Load()))
	c.f.mu.RLock()
	low := 0
	for _, r := range c.f.trust {
		if r.trustAt(c.f.clock) < TrustMax {
			low++
		}
	}
	c.f.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(lowTrustDesc, prometheus.GaugeValue, float64(low))
}

// collectors joins collectors into one.
type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
