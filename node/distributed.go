package node

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// Distributed detection. An attacker who stays under every site's local
// threshold (two passwords at each of many sites) is seen by no rule. A
// node with summaries on sends, every Interval, its sub-threshold counts
// as partial sightings (detectors.Engine.TakePartials; signed, stored and
// gossiped as every sighting). Every node sums, per indicator, the
// partials of the members within the mesh's window (the stored sightings
// are the aggregate: nothing is held in memory between evaluations), and
// when the mesh's distributed rule holds (consensus.Rules: at least
// DistributedMinSites members whose counts, each capped at
// DistributedSiteCap, reach DistributedThreshold), proposes a block
// carrying those partials as its proof; the FSM checks the same numbers
// from the entry alone (consensus/proof_distributed.go). The full rule
// (MinNodes) never counts a partial.

// DistributedConfig is corroboration.distributed: this node's part in the
// distributed rule.
type DistributedConfig struct {
	// Summaries sends this node's sub-threshold summaries (off by
	// default). Without it the node still sums the others' partials and
	// proposes when the mesh's rule holds.
	Summaries bool `yaml:"summaries"`
	// Interval is how often the summaries are batched and sent.
	Interval time.Duration `yaml:"interval"`
	// TopN bounds the summaries of one batch (the sources with the most
	// events first; the rest are counted and forgotten).
	TopN int `yaml:"top_n"`
	// Rules names the rules summarised; empty: the sliding-window brute
	// force rules (technique T1110 and its sub-techniques).
	Rules []string `yaml:"rules"`
	// MinSites, Threshold and SiteCap are the rule a mesh founded by this
	// node starts with (consensus.Rules.Distributed*; later changed by
	// the operator op set_distributed). MinSites 0 founds it off.
	MinSites  int `yaml:"min_sites"`
	Threshold int `yaml:"threshold"`
	SiteCap   int `yaml:"site_cap"`
}

// DefaultDistributedConfig: summaries off, the rule off; when turned on,
// 5 sites and 20 events, a site counting for at most 4 (ssh-bruteforce's
// threshold minus one), batches every 5 seconds of at most 256 sources.
func DefaultDistributedConfig() DistributedConfig {
	return DistributedConfig{Interval: 5 * time.Second, TopN: detectors.DefaultPartialTopN, Threshold: 20, SiteCap: 4}
}

// Bounds of the summary batches.
const (
	minSummaryInterval = 100 * time.Millisecond
	maxSummaryInterval = 10 * time.Minute
	maxSummaryTopN     = 65536
)

// validate reports every problem through bad, each naming its field
// under prefix (corroboration.distributed).
func (c DistributedConfig) validate(prefix string, minNodes int, bad func(field string, v any, msg string)) {
	f := func(name string) string { return prefix + "." + name }
	if c.Interval < minSummaryInterval || c.Interval > maxSummaryInterval {
		bad(f("interval"), c.Interval, fmt.Sprintf("want %s..%s", minSummaryInterval, maxSummaryInterval))
	}
	if c.TopN < 1 || c.TopN > maxSummaryTopN {
		bad(f("top_n"), c.TopN, fmt.Sprintf("want 1..%d", maxSummaryTopN))
	}
	for i, r := range c.Rules {
		if r == "" {
			bad(f(fmt.Sprintf("rules[%d]", i)), `""`, "want a rule name")
		}
	}
	if c.MinSites == 0 {
		return
	}
	switch {
	case c.MinSites < 2 || c.MinSites > 64:
		bad(f("min_sites"), c.MinSites, "want 2..64 (0: off); one site alone never blocks mesh-wide")
	case c.MinSites < minNodes:
		bad(f("min_sites"), c.MinSites, fmt.Sprintf("want at least corroboration.min_nodes (%d): partial evidence is weaker than full", minNodes))
	}
	if c.SiteCap < 1 || c.SiteCap > 1<<16 {
		bad(f("site_cap"), c.SiteCap, fmt.Sprintf("want 1..%d", 1<<16))
	}
	if c.Threshold <= c.SiteCap || c.Threshold > 1<<20 {
		bad(f("threshold"), c.Threshold, fmt.Sprintf("want more than site_cap (%d), at most %d", c.SiteCap, 1<<20))
	}
}

// rules is the rule as the FSM holds it (all zero when MinSites is 0).
func (c DistributedConfig) rules(minNodes int) consensus.Rules {
	r := consensus.DefaultRules()
	r.MinNodes = minNodes
	if c.MinSites > 0 {
		r.DistributedMinSites, r.DistributedThreshold, r.DistributedSiteCap = c.MinSites, c.Threshold, c.SiteCap
	}
	return r
}

// withFoundingRule puts the distributed rule into the rules a mesh
// founded by this node starts with.
func (c DistributedConfig) withFoundingRule(r *consensus.Rules) {
	d := c.rules(r.MinNodes)
	r.DistributedMinSites, r.DistributedThreshold, r.DistributedSiteCap = d.DistributedMinSites, d.DistributedThreshold, d.DistributedSiteCap
}

// partialOptions are the engine's summary options, nil when off.
func (c DistributedConfig) partialOptions() *detectors.PartialOptions {
	if !c.Summaries {
		return nil
	}
	return &detectors.PartialOptions{Rules: c.Rules, TopN: c.TopN}
}

// distributedStats counts the node's part in the distributed rule.
type distributedStats struct {
	batches, sent, sentBytes, suppressed, sendErrors atomic.Uint64
	proposals, stalePartials                         atomic.Uint64
	// dropped and lost follow the engine's PartialStats (sources beyond
	// top_n, groups evicted or expired with a count), carried over
	// engine swaps; seen is what the engine in force had counted at the
	// last batch. Only summaryLoop touches engine and seen.
	dropped, lost atomic.Uint64
	engine        *detectors.Engine
	seen          detectors.PartialStats
}

// follow adds what eng counted since the last call.
func (s *distributedStats) follow(eng *detectors.Engine) {
	st := eng.Stats().Partial
	if eng != s.engine {
		s.engine, s.seen = eng, detectors.PartialStats{}
	}
	s.dropped.Add(st.Dropped - s.seen.Dropped)
	s.lost.Add(st.Lost - s.seen.Lost)
	s.seen = st
}

func (s *distributedStats) collectors() []prometheus.Collector {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	return []prometheus.Collector{
		counter("meshward_partial_batches_total", "Batches of sub-threshold summaries taken from the detectors.", s.batches.Load),
		counter("meshward_partials_sent_total", "Partial sightings (sub-threshold summaries) signed, stored and published.", s.sent.Load),
		counter("meshward_partial_bytes_total", "Bytes of the signed partial sighting envelopes sent.", s.sentBytes.Load),
		counter("meshward_partials_suppressed_total", "Summaries of protected addresses (the mesh's own), not sent.", s.suppressed.Load),
		counter("meshward_partial_send_errors_total", "Summaries that could not be sealed or stored.", s.sendErrors.Load),
		counter("meshward_distributed_proposals_total", "Blocks proposed by this node on the distributed rule (partial sightings).", s.proposals.Load),
		counter("meshward_partials_outside_window_total", "Stored partials left out of a proof because they count events from before the window.", s.stalePartials.Load),
		counter("meshward_partials_dropped_total", "Sources beyond top_n in a batch of summaries, forgotten.", s.dropped.Load),
		counter("meshward_partials_lost_total", "Per-source states evicted or expired with events not yet summarised.", s.lost.Load),
	}
}

// summaryLoop sends the engine's sub-threshold summaries every interval
// until ctx ends.
func (n *Node) summaryLoop(ctx context.Context) {
	t := time.NewTicker(n.deps.Config.Corroboration.Distributed.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.sendSummaries(ctx)
		}
	}
}

// sendSummaries takes one batch from the engine in force and sends it.
func (n *Node) sendSummaries(ctx context.Context) {
	d := n.deps.Detectors
	if d == nil {
		return
	}
	eng := d.engine.Load()
	batch := eng.TakePartials()
	st := &n.corr.dist
	st.follow(eng)
	if len(batch) == 0 {
		return
	}
	st.batches.Add(1)
	protected := n.deps.Consensus.Protected()
	now := n.now()
	for _, s := range batch {
		if q, ok := s.Indicator.Prefix(); ok && slices.ContainsFunc(protected, q.Overlaps) {
			st.suppressed.Add(1)
			continue
		}
		s.Site = n.deps.Config.Site
		seq, err := n.outbox.send(ctx, intel.KindSighting, s, s.Indicator, now, n.deps.Gossip.Publish)
		if err != nil {
			st.sendErrors.Add(1)
			n.log.Error("send partial sighting", "indicator", s.Indicator.Value, "err", err)
			continue
		}
		st.sent.Add(1)
		n.stats.stored.Add(1) // as every sighting written: one evaluation follows
		if raw, err := n.deps.Store.GetEnvelope(n.deps.ID, seq); err == nil {
			st.sentBytes.Add(uint64(len(raw)))
		}
		n.corr.enqueue(s.Indicator)
	}
}

// maxProofsPerBlock is the FSM's bound on the proofs of one block.
const maxProofsPerBlock = 64

// decideDistributed is the distributed rule at now for ind, when the
// full rule did not hold: full holds each member's latest full sighting,
// partials the members' partial sightings sent within the window. It
// picks, per member, its largest reports until they reach the site cap,
// then the members that count most until both the sites and the sum
// are reached, and proposes a block proven by those envelopes.
func (c *corroborator) decideDistributed(ind intel.Indicator, now time.Time, full map[string]store.SightingRecord, partials []store.SightingRecord) (proposal, bool, error) {
	r := c.mesh.Rules()
	if !r.DistributedOn() || len(partials) == 0 {
		return proposal{}, false, nil
	}
	from := now.Add(-r.Window + proofMargin)
	bySite := make(map[string][]store.SightingRecord)
	for o, rec := range full {
		bySite[o] = append(bySite[o], rec)
	}
	for _, rec := range partials {
		if rec.Sighting.FirstSeen.Before(from) {
			c.dist.stalePartials.Add(1)
			continue // the FSM would refuse it: partial_outside_window
		}
		bySite[rec.Origin] = append(bySite[rec.Origin], rec)
	}
	type site struct {
		origin string
		recs   []store.SightingRecord
		count  int
	}
	sites := make([]site, 0, len(bySite))
	for _, o := range slices.Sorted(maps.Keys(bySite)) {
		recs := bySite[o]
		slices.SortFunc(recs, func(a, b store.SightingRecord) int {
			return cmp.Or(cmp.Compare(b.Sighting.Count, a.Sighting.Count), cmp.Compare(a.Seq, b.Seq))
		})
		s := site{origin: o}
		for _, rec := range recs {
			if s.count >= r.DistributedSiteCap {
				break
			}
			s.recs = append(s.recs, rec)
			s.count = r.SiteContribution(s.count, rec.Sighting.Count)
		}
		sites = append(sites, s)
	}
	slices.SortStableFunc(sites, func(a, b site) int { return cmp.Compare(b.count, a.count) })
	var chosen []site
	sum, proofs := 0, 0
	for _, s := range sites {
		if len(chosen) >= r.DistributedMinSites && sum >= r.DistributedThreshold {
			break
		}
		if proofs+len(s.recs) > maxProofsPerBlock {
			break
		}
		chosen = append(chosen, s)
		sum += s.count
		proofs += len(s.recs)
	}
	if len(chosen) < r.DistributedMinSites || sum < r.DistributedThreshold {
		return proposal{}, false, nil
	}
	if _, ok := c.mesh.Policy(intel.PolicyID(intel.ActionBlock, ind), now); ok {
		return proposal{}, false, nil // already blocked mesh-wide
	}
	var out proposal
	var evidence []intel.Evidence
	for _, s := range chosen {
		for _, rec := range s.recs {
			raw, err := c.sightings.GetEnvelope(rec.Origin, rec.Seq)
			if err != nil {
				return proposal{}, false, fmt.Errorf("read the envelope of %s #%d: %w", rec.Origin, rec.Seq, err)
			}
			out.proofs = append(out.proofs, raw)
			evidence = append(evidence, intel.Evidence{Origin: rec.Origin, Seq: rec.Seq, Detector: rec.Sighting.Detector, Seen: rec.Sighting.LastSeen})
		}
	}
	out.policy = intel.NewPolicy(intel.ActionBlock, ind,
		fmt.Sprintf("distributed: %d sites, %d events under their thresholds (%s)", len(chosen), sum, evidence[0].Detector),
		c.self, now, c.blockTTL(ind, now, r.BlockTTL))
	out.policy.Evidence = evidence
	c.dist.proposals.Add(1)
	return out, true, nil
}
