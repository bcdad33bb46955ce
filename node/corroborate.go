package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// What the corroboration rule needs, and nothing more.
type (
	// sightingLog reads the stored sightings of one indicator.
	sightingLog interface {
		SightingsFor(ind intel.Indicator, since time.Time) ([]store.SightingRecord, error)
	}
	// meshView answers who is on the roster and which policies are in
	// force.
	meshView interface {
		IsMember(nodeID string) bool
		Policy(id string, now time.Time) (intel.Policy, bool)
	}
	// proposer commits a command through consensus.
	proposer interface {
		Propose(ctx context.Context, cmd consensus.Command) error
	}
)

var (
	_ sightingLog = (*store.Store)(nil)
	_ meshView    = (*consensus.Consensus)(nil)
	_ proposer    = (*consensus.Consensus)(nil)
)

// evalQueueSize bounds the indicators waiting for evaluation; past it an
// evaluation is dropped and counted (the next sighting brings it back).
const evalQueueSize = 1024

// proposeTimeout bounds the wait for one proposal's commit.
const proposeTimeout = time.Minute

// corroborator applies the corroboration rule: when at least MinNodes
// distinct roster members sighted an indicator within Window, and no
// mesh-wide block of it is in force, it proposes one, at most one proposal
// per indicator at a time. Protected ranges and allow policies are checked
// by consensus, which refuses such a proposal; the refusal is counted.
type corroborator struct {
	self      string
	rule      CorroborationConfig
	sightings sightingLog
	mesh      meshView
	proposer  proposer
	now       func() time.Time
	log       *slog.Logger
	stats     *counters
	queue     chan intel.Indicator

	mu       sync.Mutex
	inflight map[string]bool // indicator keys with a proposal under way
}

func newCorroborator(self string, rule CorroborationConfig, sightings sightingLog, mesh meshView, p proposer,
	now func() time.Time, log *slog.Logger, stats *counters) *corroborator {
	return &corroborator{self: self, rule: rule, sightings: sightings, mesh: mesh, proposer: p, now: now, log: log,
		stats: stats, queue: make(chan intel.Indicator, evalQueueSize), inflight: make(map[string]bool)}
}

// enqueue asks for ind to be evaluated; it never blocks.
func (c *corroborator) enqueue(ind intel.Indicator) {
	select {
	case c.queue <- ind:
	default:
		c.stats.evalDrops.Add(1)
		c.log.Warn("evaluation queue full; indicator will be evaluated on its next sighting", "indicator", ind.Value)
	}
}

// run evaluates queued indicators until ctx ends; each proposal runs on
// its own through spawn.
func (c *corroborator) run(ctx context.Context, spawn func(func(context.Context)) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case ind := <-c.queue:
			if p, ok := c.evaluate(ind); ok {
				if !spawn(func(ctx context.Context) { c.propose(ctx, p) }) {
					c.release(p.Indicator.Key())
				}
			}
			c.stats.evals.Add(1)
		}
	}
}

// evaluate applies the rule to one indicator. It returns the block to
// propose, and then holds the indicator in flight until release.
func (c *corroborator) evaluate(ind intel.Indicator) (intel.Policy, bool) {
	now := c.now()
	p, ok, err := c.decide(ind, now)
	if err != nil {
		c.log.Error("read sightings", "indicator", ind.Value, "err", err)
		return intel.Policy{}, false
	}
	if !ok {
		return intel.Policy{}, false
	}
	key := ind.Key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[key] {
		return intel.Policy{}, false
	}
	c.inflight[key] = true
	c.stats.proposals.Add(1)
	return p, true
}

// decide is the rule itself: the block to propose at now, if any.
func (c *corroborator) decide(ind intel.Indicator, now time.Time) (intel.Policy, bool, error) {
	recs, err := c.sightings.SightingsFor(ind, now.Add(-c.rule.Window))
	if err != nil {
		return intel.Policy{}, false, err
	}
	origins := make(map[string]bool)
	var evidence []intel.Evidence
	for _, r := range recs {
		if origins[r.Origin] || !c.mesh.IsMember(r.Origin) {
			continue
		}
		origins[r.Origin] = true
		evidence = append(evidence, intel.Evidence{Origin: r.Origin, Seq: r.Seq, Detector: r.Sighting.Detector, Seen: r.Sighting.LastSeen})
	}
	if len(origins) < c.rule.MinNodes || len(evidence) == 0 {
		return intel.Policy{}, false, nil
	}
	if _, ok := c.mesh.Policy(intel.PolicyID(intel.ActionBlock, ind), now); ok {
		return intel.Policy{}, false, nil // already blocked mesh-wide
	}
	sort.Slice(evidence, func(i, j int) bool { return evidence[i].Origin < evidence[j].Origin })
	p := intel.NewPolicy(intel.ActionBlock, ind,
		fmt.Sprintf("corroborated by %d nodes (%s)", len(origins), evidence[0].Detector),
		c.self, now, c.rule.BlockTTL)
	p.Evidence = evidence
	return p, true, nil
}

// propose commits p and releases its indicator.
func (c *corroborator) propose(ctx context.Context, p intel.Policy) {
	defer c.release(p.Indicator.Key())
	ctx, cancel := context.WithTimeout(ctx, proposeTimeout)
	defer cancel()
	err := c.proposer.Propose(ctx, consensus.Command{Type: consensus.CmdPutPolicy, At: p.CreatedAt, Policy: &p})
	switch {
	case err == nil:
		c.log.Info("mesh-wide block committed", "indicator", p.Indicator.Value, "nodes", len(p.Evidence))
	case errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrAllowed):
		c.stats.refused.Add(1)
		c.log.Warn("mesh-wide block refused", "indicator", p.Indicator.Value, "err", err)
	default:
		c.stats.propErrs.Add(1)
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			c.log.Error("propose mesh-wide block", "indicator", p.Indicator.Value, "err", err)
		}
	}
}

func (c *corroborator) release(key string) {
	c.mu.Lock()
	delete(c.inflight, key)
	c.mu.Unlock()
}
