package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
	"github.com/meshward/meshward/store"
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
	// reportLog reads the stored indicator reports, and the envelope of
	// one (the proof a feed block carries).
	reportLog interface {
		IndicatorReports(limit int) ([]store.ReportRecord, error)
		GetEnvelope(origin string, seq uint64) ([]byte, error)
	}
)

var (
	_ feedView     = (*consensus.Consensus)(nil)
	_ feedProposer = (*consensus.Consensus)(nil)
	_ reportLog    = (*store.Store)(nil)
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
	promoteWorkers = 32
	// rescanInterval is how often the feed policies are looked at for a
	// change besides when the mesh's state changed (consensusChanged)
	// or a full queue dropped a promotion, and rescanLimit how many of
	// the newest stored reports a rescan reads (rescan).
	rescanInterval = 10 * time.Second
	rescanLimit    = 100000
	// promoteDefer is how long a node waits before it proposes the block
	// of a report another node published: the publisher proposes at
	// once, and the others, finding the block committed by then, do not
	// load the log with duplicates; they propose only when it is not (the
	// publisher failed).
	promoteDefer = 5 * time.Second
)

// promoter turns indicator reports into feed block proposals: a report
// whose source an enabled feed policy takes, meeting its confidence, type
// and validity, signed by a permitted publisher, above the floors, not
// warninglisted and not blocked already, becomes a proposal whose proof
// is the report's envelope, exactly as signed. The FSM checks all of it
// again. Each feed policy has its own bounded queue and rate; the workers
// take from the queues in turn.
type promoter struct {
	self    string // this node's ID: its own reports are proposed at once
	mesh    feedView
	prop    feedProposer
	reports reportLog
	now     func() time.Time
	log     *slog.Logger
	rate    float64
	burst   float64

	skipped *prometheus.CounterVec // reason
	results *prometheus.CounterVec // feed, result
	rescans prometheus.Counter

	mu       sync.Mutex
	queues   map[string]*feedQueue // by feed policy name
	order    []string              // queue names, in turn
	turn     int
	inflight map[string]bool // block IDs queued or being proposed
	wake     chan struct{}
	poke     chan struct{} // wakes rescanLoop
	room     chan struct{} // signalled when a promotion leaves a queue
	dropped  bool          // a promotion was dropped since the last rescan
}

type feedQueue struct {
	items  []promotion // to propose now
	later  []promotion // deferred, in the order they become ready
	tokens float64
	last   time.Time
}

func (q *feedQueue) len() int { return len(q.items) + len(q.later) }

type promotion struct {
	feed   string
	report []byte
	block  intel.Policy
	ready  time.Time // zero: now
}

func newPromoter(self string, mesh feedView, prop feedProposer, reports reportLog, now func() time.Time, log *slog.Logger) *promoter {
	return &promoter{self: self, mesh: mesh, prop: prop, reports: reports, now: now, log: log, rate: promoteRate, burst: promoteBurst,
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshward_feed_promotion_skipped_total",
			Help: "Indicator reports not promoted to a feed block proposal on this node, by reason.",
		}, []string{"reason"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshward_feed_promotions_total",
			Help: "Feed block promotions on this node by feed policy and result (queued, committed, refused, error, dropped).",
		}, []string{"feed", "result"}),
		rescans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshward_feed_promotion_rescans_total",
			Help: "Rescans of the stored indicator reports after a feed policy changed or promotions were dropped.",
		}),
		queues: map[string]*feedQueue{}, inflight: map[string]bool{}, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), poke: make(chan struct{}, 1)}
}

func (p *promoter) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.skipped, p.results, p.rescans}
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
	if pr, ok := p.consider(r, env.OriginID()); ok {
		pr.report = env.Raw
		p.enqueue(pr)
	}
}

// wants reports whether an enabled feed policy takes reports of source.
func (p *promoter) wants(source string) bool {
	for _, fp := range p.mesh.FeedPolicies() {
		if fp.Enabled && fp.Source == source {
			return true
		}
	}
	return false
}

// consider applies the feed policies to report r signed by origin, and
// returns the promotion (without its proof) or counts why there is none.
func (p *promoter) consider(r intel.IndicatorReport, origin string) (promotion, bool) {
	now := p.now()
	var fp intel.FeedPolicy
	found, reason := false, "no_feed_policy"
	for _, cand := range p.mesh.FeedPolicies() {
		if cand.Source != r.Source {
			continue
		}
		why, _ := cand.CheckReport(r, now)
		if why == "" && !p.mesh.FeedPublisher(cand, origin) {
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
		return promotion{}, false
	}
	ind := r.Indicator
	if err := p.mesh.Rules().Floors.CheckBlock(ind, false); err != nil {
		p.skip("floor")
		return promotion{}, false
	}
	if e, ok := p.mesh.Warninglisted(ind); ok {
		p.skip("warninglist")
		p.log.Debug("feed entry warninglisted: never blocked", "indicator", ind.Value, "feed", fp.Name, "entry", e.String())
		return promotion{}, false
	}
	ttl := fp.FeedBlockTTL(r, now)
	if ttl < time.Second {
		p.skip(intel.FeedReasonNotValid)
		return promotion{}, false
	}
	block := intel.NewPolicy(intel.ActionBlock, ind, "feed "+r.Source, "feed:"+fp.Name, now, ttl)
	if p.blocked(block, now) {
		p.skip("already_blocked")
		return promotion{}, false
	}
	pr := promotion{feed: fp.Name, block: block}
	if origin != p.self {
		pr.ready = now.Add(promoteDefer)
	}
	return pr, true
}

// blocked reports whether the mesh holds block already, for at least
// half its TTL to come.
func (p *promoter) blocked(block intel.Policy, now time.Time) bool {
	old, ok := p.mesh.Policy(block.ID, now)
	half := block.ExpiresAt.Sub(block.CreatedAt) / 2
	return ok && (old.ExpiresAt.IsZero() || !old.ExpiresAt.Before(block.ExpiresAt.Add(-half)))
}

func (p *promoter) enqueue(pr promotion) {
	p.tryEnqueue(pr, true)
}

// tryEnqueue queues pr unless its block is in flight; when the feed's
// queue is full it drops pr (counted) if drop, else reports false.
func (p *promoter) tryEnqueue(pr promotion, drop bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[pr.block.ID] {
		p.skip("in_flight")
		return true
	}
	q, ok := p.queues[pr.feed]
	if !ok {
		q = &feedQueue{tokens: p.burst, last: p.now()}
		p.queues[pr.feed] = q
		p.order = append(p.order, pr.feed)
	}
	if q.len() >= promoteQueueSize {
		if !drop {
			return false
		}
		p.results.WithLabelValues(pr.feed, "dropped").Inc()
		p.dropped = true
		p.consensusChanged() // rescan once there is room
		return true
	}
	if pr.ready.IsZero() {
		q.items = append(q.items, pr)
	} else {
		q.later = append(q.later, pr)
	}
	p.inflight[pr.block.ID] = true
	p.results.WithLabelValues(pr.feed, "queued").Inc()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
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
		// Deferred promotions whose block was committed meanwhile are
		// done, without spending the feed's rate.
		for len(q.items) == 0 && len(q.later) > 0 && !q.later[0].ready.After(now) && p.blocked(q.later[0].block, now) {
			delete(p.inflight, q.later[0].block.ID)
			q.later[0] = promotion{}
			q.later = q.later[1:]
			p.skip("already_blocked")
			select {
			case p.room <- struct{}{}:
			default:
			}
		}
		from := &q.items
		if len(q.items) == 0 {
			if len(q.later) == 0 {
				continue
			}
			if w := q.later[0].ready.Sub(now); w > 0 {
				if wait == 0 || w < wait {
					wait = w
				}
				continue
			}
			from = &q.later
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
		pr := (*from)[0]
		(*from)[0] = promotion{}
		*from = (*from)[1:]
		select {
		case p.room <- struct{}{}:
		default:
		}
		if q.len() == 0 {
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
	wg.Go(func() { p.rescanLoop(ctx) })
	wg.Wait()
}

// consensusChanged tells the promoter that the mesh's state changed (a
// feed policy may have), or that a promotion was dropped: rescanLoop
// looks at once.
func (p *promoter) consensusChanged() {
	select {
	case p.poke <- struct{}{}:
	default:
	}
}

// rescanLoop rescans the stored reports when the feed policies change
// (one is added, enabled or changed), so that a policy applies to a feed
// received before it, and after promotions were dropped, so that what a
// full queue dropped is proposed once there is room.
func (p *promoter) rescanLoop(ctx context.Context) {
	t := time.NewTicker(rescanInterval)
	defer t.Stop()
	seen := map[string]string{} // enabled policy name -> its JSON
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.poke:
		}
		changed := false
		next := map[string]string{}
		for _, fp := range p.mesh.FeedPolicies() {
			if !fp.Enabled {
				continue
			}
			b, _ := json.Marshal(fp)
			next[fp.Name] = string(b)
			changed = changed || seen[fp.Name] != string(b)
		}
		seen = next
		p.mu.Lock()
		dropped := p.dropped
		p.dropped = false
		p.mu.Unlock()
		if (changed || dropped) && len(next) > 0 {
			p.rescan(ctx)
		}
	}
}

// rescan offers the newest stored reports (up to rescanLimit) of the
// sources the feed policies take, waiting for room in a full queue
// rather than dropping.
func (p *promoter) rescan(ctx context.Context) {
	defer p.rescans.Inc()
	recs, err := p.reports.IndicatorReports(rescanLimit)
	if err != nil {
		p.log.Error("read stored reports for promotion", "err", err)
		return
	}
	n := 0
	for _, rec := range recs {
		if ctx.Err() != nil {
			return
		}
		if !p.wants(rec.Report.Source) {
			continue
		}
		pr, ok := p.consider(rec.Report, rec.Origin)
		if !ok {
			continue
		}
		raw, err := p.reports.GetEnvelope(rec.Origin, rec.Seq)
		if err != nil {
			p.log.Warn("read a stored report for promotion", "origin", rec.Origin, "seq", rec.Seq, "err", err)
			continue
		}
		pr.report = raw
		for !p.tryEnqueue(pr, false) {
			select {
			case <-ctx.Done():
				return
			case <-p.room:
			}
		}
		n++
	}
	if n > 0 {
		p.log.Info("stored reports offered for promotion", "count", n)
	}
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
