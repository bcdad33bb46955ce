package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
)

// What promotion needs of the mesh, and nothing more.
type (
	// feedView answers which feed policies are in force, who may publish
	// a feed, what the warninglist vetoes, and what is blocked already.
	feedView interface {
		FeedPolicies() []intel.FeedPolicy
		FeedPublisher(p intel.FeedPolicy, node string) bool
		Warninglisted(ind intel.Indicator) (warninglist.Entry, bool)
		Policy(id string, now time.Time) (intel.Policy, bool)
		Rules() consensus.Rules
	}
	// feedProposer commits a feed block.
	feedProposer interface {
		ProposeFeedBlock(ctx context.Context, policy string, report []byte, block intel.Policy) error
	}
)

var (
	_ feedView     = (*consensus.Consensus)(nil)
	_ feedProposer = (*consensus.Consensus)(nil)
)

// Bounds of promotion.
const (
	// promoteQueueSize bounds the promotions waiting, per feed policy;
	// past it a promotion is dropped and counted.
	promoteQueueSize = 4096
	// promoteRate and promoteBurst bound the promotions proposed per feed
	// policy: a feed of a million entries waits in its queue (and
	// overflows it, counted) rather than flooding the Raft log.
	promoteRate  = 200 // per second
	promoteBurst = 400
	// promoteWorkers propose concurrently; a follower's forwarder sends
	// the proposals waiting together in one batch to the leader.
	promoteWorkers = 8
)

// promoter turns indicator reports into feed block proposals: a report
// whose source an enabled feed policy takes, meeting its confidence, type
// and validity, signed by a permitted publisher, above the floors, not
// warninglisted and not blocked already, becomes a proposal whose proof
// is the report's envelope, exactly as signed. The FSM checks all of it
// again. Each feed policy has its own bounded queue and rate; the workers
// take from the queues in turn.
type promoter struct {
	mesh  feedView
	prop  feedProposer
	now   func() time.Time
	log   *slog.Logger
	rate  float64
	burst float64

	skipped *prometheus.CounterVec // reason
	results *prometheus.CounterVec // feed, result

	mu       sync.Mutex
	queues   map[string]*feedQueue // by feed policy name
	order    []string              // queue names, in turn
	turn     int
	inflight map[string]bool // block IDs queued or being proposed
	wake     chan struct{}
}

type feedQueue struct {
	items  []promotion
	tokens float64
	last   time.Time
}

type promotion struct {
	feed   string
	report []byte
	block  intel.Policy
}

func newPromoter(mesh feedView, prop feedProposer, now func() time.Time, log *slog.Logger) *promoter {
	return &promoter{mesh: mesh, prop: prop, now: now, log: log, rate: promoteRate, burst: promoteBurst,
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshward_feed_promotion_skipped_total",
			Help: "Indicator reports not promoted to a feed block proposal on this node, by reason.",
		}, []string{"reason"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshward_feed_promotions_total",
			Help: "Feed block promotions on this node by feed policy and result (queued, committed, refused, error, dropped).",
		}, []string{"feed", "result"}),
		queues: map[string]*feedQueue{}, inflight: map[string]bool{}, wake: make(chan struct{}, 1)}
}

func (p *promoter) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.skipped, p.results}
}

func (p *promoter) skip(reason string) { p.skipped.WithLabelValues(reason).Inc() }

// offer considers one verified indicator report envelope; it never
// blocks.
func (p *promoter) offer(env *intel.Envelope) {
	if env.Kind != intel.KindIndicator {
		return
	}
	r, err := intel.DecodeIndicatorReport(env)
	if err != nil {
		p.skip("malformed")
		return
	}
	now := p.now()
	var fp intel.FeedPolicy
	found, reason := false, "no_feed_policy"
	for _, cand := range p.mesh.FeedPolicies() {
		if cand.Source != r.Source {
			continue
		}
		why, _ := cand.CheckReport(r, now)
		if why == "" && !p.mesh.FeedPublisher(cand, env.OriginID()) {
			why = "not_publisher"
		}
		if why == "" {
			fp, found = cand, true
			break
		}
		reason = why
	}
	if !found {
		p.skip(reason)
		return
	}
	ind := r.Indicator
	if err := p.mesh.Rules().Floors.CheckBlock(ind, false); err != nil {
		p.skip("floor")
		return
	}
	if e, ok := p.mesh.Warninglisted(ind); ok {
		p.skip("warninglist")
		p.log.Debug("feed entry warninglisted: never blocked", "indicator", ind.Value, "feed", fp.Name, "entry", e.String())
		return
	}
	ttl := fp.FeedBlockTTL(r, now)
	if ttl < time.Second {
		p.skip(intel.FeedReasonNotValid)
		return
	}
	block := intel.NewPolicy(intel.ActionBlock, ind, "feed "+r.Source, "feed:"+fp.Name, now, ttl)
	if old, ok := p.mesh.Policy(block.ID, now); ok && (old.ExpiresAt.IsZero() || !old.ExpiresAt.Before(block.ExpiresAt.Add(-ttl/2))) {
		p.skip("already_blocked") // and for at least half the TTL to come
		return
	}
	p.enqueue(promotion{feed: fp.Name, report: env.Raw, block: block})
}

func (p *promoter) enqueue(pr promotion) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[pr.block.ID] {
		p.skip("in_flight")
		return
	}
	q, ok := p.queues[pr.feed]
	if !ok {
		q = &feedQueue{tokens: p.burst, last: p.now()}
		p.queues[pr.feed] = q
		p.order = append(p.order, pr.feed)
	}
	if len(q.items) >= promoteQueueSize {
		p.results.WithLabelValues(pr.feed, "dropped").Inc()
		return
	}
	q.items = append(q.items, pr)
	p.inflight[pr.block.ID] = true
	p.results.WithLabelValues(pr.feed, "queued").Inc()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take returns the next promotion a feed's rate allows, taking the
// feeds in turn; else how long until one may be ready (0: none waits).
func (p *promoter) take() (promotion, time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var wait time.Duration
	for i := range p.order {
		k := (p.turn + i) % len(p.order)
		name := p.order[k]
		q := p.queues[name]
		if len(q.items) == 0 {
			continue
		}
		if dt := now.Sub(q.last).Seconds(); dt > 0 {
			q.tokens = min(p.burst, q.tokens+dt*p.rate)
		}
		q.last = now
		if q.tokens < 1 {
			w := time.Duration((1 - q.tokens) / p.rate * float64(time.Second))
			if wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		q.tokens--
		pr := q.items[0]
		q.items[0] = promotion{}
		q.items = q.items[1:]
		if len(q.items) == 0 {
			// Drop the empty queue so that the map and the turn order stay
			// as small as the feeds now promoting.
			delete(p.queues, name)
			p.order = append(p.order[:k], p.order[k+1:]...)
			p.turn = k
		} else {
			p.turn = k + 1
		}
		if len(p.order) > 0 {
			// More is waiting: wake another worker for it.
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
		return pr, 0, true
	}
	return promotion{}, wait, false
}

// run proposes queued promotions until ctx ends, with promoteWorkers
// workers; it returns once they have all stopped.
func (p *promoter) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range promoteWorkers {
		wg.Go(func() { p.work(ctx) })
	}
	wg.Wait()
}

func (p *promoter) work(ctx context.Context) {
	for {
		pr, wait, ok := p.take()
		if ok {
			p.propose(ctx, pr)
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (p *promoter) propose(ctx context.Context, pr promotion) {
	defer func() {
		p.mu.Lock()
		delete(p.inflight, pr.block.ID)
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, proposeTimeout)
	defer cancel()
	err := p.prop.ProposeFeedBlock(ctx, pr.feed, pr.report, pr.block)
	switch {
	case err == nil:
		p.results.WithLabelValues(pr.feed, "committed").Inc()
		p.log.Info("feed block committed", "indicator", pr.block.Indicator.Value, "feed", pr.feed)
	case errors.Is(err, consensus.ErrProtected), errors.Is(err, consensus.ErrAllowed), errors.Is(err, consensus.ErrRefused):
		p.results.WithLabelValues(pr.feed, "refused").Inc()
		p.log.Warn("feed block refused", "indicator", pr.block.Indicator.Value, "feed", pr.feed, "reason", consensus.RefusalReason(err), "err", err)
	default:
		p.results.WithLabelValues(pr.feed, "error").Inc()
		if ctx.Err() == nil {
			p.log.Error("propose feed block", "indicator", pr.block.Indicator.Value, "feed", pr.feed, "err", err)
		}
	}
}
