package node

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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
	// sightingLog reads the stored sightings of one indicator, and the
	// signed envelope of one (the proof an automatic block carries).
	sightingLog interface {
		SightingsFor(ind intel.Indicator, since time.Time) ([]store.SightingRecord, error)
		GetEnvelope(origin string, seq uint64) ([]byte, error)
	}
	// meshView answers who is on the roster, which policies are in force
	// and the mesh's rules of automatic blocking.
	meshView interface {
		IsMember(nodeID string) bool
		Policy(id string, now time.Time) (intel.Policy, bool)
		Rules() consensus.Rules
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

// proofMargin keeps sightings sent within this much of the window's far
// edge out of a proof: the FSM measures the window from the entry's
// time, which may be a little later than this node's clock.
const proofMargin = 30 * time.Second

// proposal is an automatic block and the signed sightings that prove it.
type proposal struct {
	policy intel.Policy
	proofs [][]byte
}

// corroborator applies the corroboration rule: when at least MinNodes
// distinct roster members sighted an indicator within Window, and no
// mesh-wide block of it is in force, it proposes one carrying the signed
// sightings (the envelopes exactly as stored), at most one proposal per
// indicator at a time. The rule is the mesh's (consensus.Rules, which the
// FSM checks the proofs against); this node's configured rule serves
// until the mesh's is known. Protected ranges, allow policies and the
// floors are checked by consensus, which refuses such a proposal; the
// refusal is counted.
type corroborator struct {
	self      string
	rule      CorroborationConfig
	sightings sightingLog
	mesh      meshView
	proposer  proposer
	now       func() time.Time
	log       *slog.Logger
	stats     *counters
	dist      distributedStats // the distributed rule's counters (distributed.go)
	queue     chan intel.Indicator

	mu       sync.Mutex
	inflight map[string]bool // indicator keys with a proposal under way
	// witnessGrace is how long a node that sighted none of a block's
	// evidence waits before it proposes the block itself (zero: it does
	// not wait); deferred are the blocks waiting so, by indicator key,
	// and wake tells run that one was added.
	witnessGrace time.Duration
	deferred     map[string]deferredBlock
	wake         chan struct{}
}

// deferredBlock is a block a non-witness waits to propose.
type deferredBlock struct {
	ind intel.Indicator
	due time.Time
}

// maxDeferred bounds the blocks waiting on witnesses; past it a node
// proposes at once, as it would without the grace.
const maxDeferred = 4096

// witnessGrace is how long node self waits on the witnesses of a block
// (the members whose sightings prove it) to propose it: they propose at
// once, and in a mesh of a thousand nodes the other 998 proposing the
// same block at the same moment would queue a thousand proposals at the
// leader and put up to a thousand duplicate entries in the log. A node
// proposes after the grace only if no block is in force by then (the
// witnesses failed). Between 2 and 5 s, spread by node ID so that those
// nodes do not all propose at once either.
func witnessGrace(self string) time.Duration {
	h := fnv.New32a()
	h.Write([]byte(self))
	return 2*time.Second + time.Duration(h.Sum32()%3000)*time.Millisecond
}

func newCorroborator(self string, rule CorroborationConfig, sightings sightingLog, mesh meshView, p proposer,
	now func() time.Time, log *slog.Logger, stats *counters) *corroborator {
	return &corroborator{self: self, rule: rule, sightings: sightings, mesh: mesh, proposer: p, now: now, log: log,
		stats: stats, queue: make(chan intel.Indicator, evalQueueSize), inflight: make(map[string]bool),
		witnessGrace: witnessGrace(self), deferred: make(map[string]deferredBlock), wake: make(chan struct{}, 1)}
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
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			due.Reset(c.nextDue())
		case <-due.C:
			for _, ind := range c.dueBlocks() {
				c.enqueue(ind)
			}
			due.Reset(c.nextDue())
		case ind := <-c.queue:
			if p, ok := c.evaluate(ind); ok {
				if !spawn(func(ctx context.Context) { c.propose(ctx, p) }) {
					c.release(p.policy.Indicator.Key())
				}
			}
			c.stats.evals.Add(1)
		}
	}
}

// evaluate applies the rule to one indicator. It returns the block to
// propose, and then holds the indicator in flight until release.
func (c *corroborator) evaluate(ind intel.Indicator) (proposal, bool) {
	now := c.now()
	p, ok, err := c.decide(ind, now)
	if err != nil {
		c.log.Error("read sightings", "indicator", ind.Value, "err", err)
		return proposal{}, false
	}
	key := ind.Key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		delete(c.deferred, key) // blocked by now, or no longer proven
		return proposal{}, false
	}
	if c.inflight[key] {
		return proposal{}, false
	}
	if c.witnessGrace > 0 && !witnessed(p.policy, c.self) {
		d, waiting := c.deferred[key]
		switch {
		case !waiting && len(c.deferred) < maxDeferred:
			c.deferred[key] = deferredBlock{ind: ind, due: now.Add(c.witnessGrace)}
			c.stats.deferred.Add(1)
			select {
			case c.wake <- struct{}{}:
			default:
			}
			return proposal{}, false
		case waiting && now.Before(d.due):
			return proposal{}, false
		}
		delete(c.deferred, key) // the witnesses did not: propose
	}
	c.inflight[key] = true
	c.stats.proposals.Add(1)
	return p, true
}

// witnessed reports whether self sighted some of p's evidence.
func witnessed(p intel.Policy, self string) bool {
	for _, e := range p.Evidence {
		if e.Origin == self {
			return true
		}
	}
	return false
}

// nextDue is how long until the first deferred block is due (an hour
// when none waits).
func (c *corroborator) nextDue() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := time.Hour
	now := c.now()
	for _, d := range c.deferred {
		next = min(next, max(d.due.Sub(now), time.Millisecond))
	}
	return next
}

// dueBlocks returns the indicators of the deferred blocks that are due.
// They stay deferred until evaluated (evaluate drops them).
func (c *corroborator) dueBlocks() []intel.Indicator {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []intel.Indicator
	now := c.now()
	for _, d := range c.deferred {
		if !now.Before(d.due) {
			out = append(out, d.ind)
		}
	}
	return out
}

// rules is the mesh's rule once known, else this node's configured one.
func (c *corroborator) rules() (minNodes int, window, ttl time.Duration) {
	if r := c.mesh.Rules(); r.MinNodes > 0 {
		return r.MinNodes, r.Window, r.BlockTTL
	}
	return c.rule.MinNodes, c.rule.Window, c.rule.BlockTTL
}

// blockTTL is how long an automatic block of ind may last: the mesh's
// TTL, doubled for each automatic block of ind before (consensus
// recidive), when the mesh view knows; else ttl.
func (c *corroborator) blockTTL(ind intel.Indicator, now time.Time, ttl time.Duration) time.Duration {
	if r, ok := c.mesh.(interface {
		RecidiveTTL(intel.Indicator, time.Time) time.Duration
	}); ok {
		if d := r.RecidiveTTL(ind, now); d > 0 {
			return d
		}
	}
	return ttl
}

// decide is the rule itself: the block to propose at now, if any, with
// one signed sighting of each distinct member (its latest).
func (c *corroborator) decide(ind intel.Indicator, now time.Time) (proposal, bool, error) {
	minNodes, window, ttl := c.rules()
	recs, err := c.sightings.SightingsFor(ind, now.Add(-window))
	if err != nil {
		return proposal{}, false, err
	}
	latest := make(map[string]store.SightingRecord)
	var partials []store.SightingRecord // never counted under MinNodes
	for _, r := range recs {
		if !c.mesh.IsMember(r.Origin) {
			continue
		}
		if !r.Sent.IsZero() && (r.Sent.Before(now.Add(-window+proofMargin)) || r.Sent.After(now.Add(proofMargin))) {
			continue // the FSM could find it outside the window
		}
		if r.Sighting.Partial {
			partials = append(partials, r)
			continue
		}
		if old, ok := latest[r.Origin]; !ok || r.Sighting.LastSeen.After(old.Sighting.LastSeen) {
			latest[r.Origin] = r
		}
	}
	if len(latest) < minNodes || len(latest) == 0 {
		return c.decideDistributed(ind, now, latest, partials)
	}
	if _, ok := c.mesh.Policy(intel.PolicyID(intel.ActionBlock, ind), now); ok {
		return proposal{}, false, nil // already blocked mesh-wide
	}
	origins := make([]string, 0, len(latest))
	for o := range latest {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	var out proposal
	var evidence []intel.Evidence
	for _, o := range origins {
		r := latest[o]
		raw, err := c.sightings.GetEnvelope(r.Origin, r.Seq)
		if err != nil {
			return proposal{}, false, fmt.Errorf("read the envelope of %s #%d: %w", r.Origin, r.Seq, err)
		}
		out.proofs = append(out.proofs, raw)
		evidence = append(evidence, intel.Evidence{Origin: r.Origin, Seq: r.Seq, Detector: r.Sighting.Detector, Seen: r.Sighting.LastSeen})
	}
	out.policy = intel.NewPolicy(intel.ActionBlock, ind,
		fmt.Sprintf("corroborated by %d nodes (%s)", len(origins), evidence[0].Detector),
		c.self, now, c.blockTTL(ind, now, ttl))
	out.policy.Evidence = evidence
	return out, true, nil
}

// propose commits p and releases its indicator.
func (c *corroborator) propose(ctx context.Context, pr proposal) {
	p := pr.policy
	defer c.release(p.Indicator.Key())
	ctx, cancel := context.WithTimeout(ctx, proposeTimeout)
	defer cancel()
	err := c.proposer.Propose(ctx, consensus.Command{Type: consensus.CmdPutPolicy, At: p.CreatedAt, Policy: &p, Proofs: pr.proofs})
	switch {
	case err == nil:
		c.log.Info("mesh-wide block committed", "indicator", p.Indicator.Value, "nodes", len(p.Evidence))
	case errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrAllowed), errors.Is(err, consensus.ErrRefused):
		c.stats.refused.Add(1)
		c.log.Warn("mesh-wide block refused", "indicator", p.Indicator.Value, "reason", consensus.RefusalReason(err), "err", err)
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
