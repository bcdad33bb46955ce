package node

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
	"github.com/meshward/meshward/store"
)

func feedPolicy() intel.FeedPolicy {
	return intel.FeedPolicy{Name: "feodo", Source: "feodo-tracker", MinConfidence: 80,
		Types: []intel.IndicatorType{intel.IPv4, intel.Domain}, Action: intel.ActionBlock, TTLSeconds: 3600, Enabled: true}
}

func feedReport(t *testing.T, value string, conf int) intel.IndicatorReport {
	t.Helper()
	ind, err := intel.ParseIndicator(value)
	if err != nil {
		t.Fatal(err)
	}
	return intel.IndicatorReport{Indicator: ind, Source: "feodo-tracker", Confidence: conf, ValidFrom: time.Now().UTC().Add(-time.Minute)}
}

// A real node, the mesh's only voter, publishes a feed's reports: under
// the operator's feed policy the one meeting it becomes a mesh-wide
// block; the one below the confidence and the warninglisted ones never
// do, and each skip is counted by reason.
func TestNodePromotesFeedReports(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.Gossip.Indicators = true })
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Consensus().ProposeOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpSetFeedPolicy, FeedPolicy: new(feedPolicy())})); err != nil {
		t.Fatalf("set the feed policy: %v", err)
	}
	// The new policy makes the promoter rescan the stored reports once;
	// wait for it, so that the reports below are considered once each and
	// not again by a rescan that runs after them.
	waitFor(t, "the policy's rescan", func() bool { return counterValue(t, n.promote.rescans) >= 1 })
	skipped := func(reason string) float64 { return counterValue(t, n.promote.skipped.WithLabelValues(reason)) }
	for _, r := range []intel.IndicatorReport{feedReport(t, "203.0.113.70", 50), feedReport(t, "8.8.8.8", 100), feedReport(t, "www.google.com", 100)} {
		if _, err := n.PublishReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if skipped("feed_confidence") != 1 || skipped("warninglist") != 2 {
		t.Fatalf("skipped: confidence %v, warninglist %v; want 1 and 2", skipped("feed_confidence"), skipped("warninglist"))
	}
	good := feedReport(t, "203.0.113.71", 90)
	if _, err := n.PublishReport(ctx, good); err != nil {
		t.Fatal(err)
	}
	id := intel.PolicyID(intel.ActionBlock, good.Indicator)
	waitFor(t, "the feed block", func() bool { _, ok := n.Consensus().Policy(id, time.Now()); return ok })
	p, _ := n.Consensus().Policy(id, time.Now())
	if p.Author != "feed:feodo" || p.ExpiresAt.Sub(p.CreatedAt) > time.Hour {
		t.Fatalf("feed block %+v", p)
	}
	waitFor(t, "the commit counted", func() bool {
		return counterValue(t, n.promote.results.WithLabelValues("feodo", "committed")) == 1
	})
	for _, v := range []string{"203.0.113.70", "8.8.8.8", "www.google.com"} {
		ind, _ := intel.ParseIndicator(v)
		if _, ok := n.Consensus().Policy(intel.PolicyID(intel.ActionBlock, ind), time.Now()); ok {
			t.Errorf("%s is blocked", v)
		}
	}
	// Published again: blocked already, not proposed again.
	if _, err := n.PublishReport(ctx, good); err != nil {
		t.Fatal(err)
	}
	if skipped("already_blocked") != 1 {
		t.Fatalf("already_blocked counted %v times, want 1", skipped("already_blocked"))
	}
	// The operators extend the warninglist: a later entry under it is
	// never proposed.
	partner, _ := intel.ParseIndicator("198.51.100.0/24")
	if err := n.Consensus().ProposeOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpWarninglistAdd, Indicator: &partner, Reason: "partner"})); err != nil {
		t.Fatalf("add to the warninglist: %v", err)
	}
	if _, err := n.PublishReport(ctx, feedReport(t, "198.51.100.20", 99)); err != nil {
		t.Fatal(err)
	}
	if skipped("warninglist") != 3 {
		t.Fatalf("warninglist counted %v times, want 3", skipped("warninglist"))
	}
}

// --- the promoter alone ------------------------------------------------------

type fakeFeedMesh struct {
	policies   []intel.FeedPolicy
	publishers map[string]bool
	mu         sync.Mutex
	blocked    map[string]bool // policy IDs held
}

func (f *fakeFeedMesh) FeedPolicies() []intel.FeedPolicy { return f.policies }
func (f *fakeFeedMesh) FeedPublisher(_ intel.FeedPolicy, node string) bool {
	return f.publishers[node]
}
func (f *fakeFeedMesh) Warninglisted(ind intel.Indicator) (warninglist.Entry, bool) {
	return warninglist.Builtin().Match(ind)
}
func (f *fakeFeedMesh) Policy(id string, _ time.Time) (intel.Policy, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return intel.Policy{ID: id}, f.blocked[id] // no expiry
}
func (f *fakeFeedMesh) Rules() consensus.Rules { return consensus.DefaultRules() }

type fakeFeedProposer struct {
	mu    sync.Mutex
	got   []string
	block chan struct{} // when not nil, each proposal waits for a value
}

func (f *fakeFeedProposer) ProposeFeedBlock(ctx context.Context, policy string, report []byte, block intel.Policy) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	f.got = append(f.got, block.Indicator.Value)
	f.mu.Unlock()
	return nil
}

func sealedReport(t *testing.T, key ed25519.PrivateKey, seq uint64, r intel.IndicatorReport) *intel.Envelope {
	t.Helper()
	raw, err := intel.SealJSON(key, intel.KindIndicator, seq, time.Now().UTC(), r)
	if err != nil {
		t.Fatal(err)
	}
	env, err := intel.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestPromoterChecksBeforeProposing(t *testing.T) {
	pubKey := ed25519.NewKeyFromSeed(make([]byte, 32))
	rogueKey := ed25519.NewKeyFromSeed(append(make([]byte, 31), 1))
	mesh := &fakeFeedMesh{policies: []intel.FeedPolicy{feedPolicy()}, publishers: map[string]bool{intel.NodeID(pubKey.Public().(ed25519.PublicKey)): true}}
	p := newPromoter(intel.NodeID(pubKey.Public().(ed25519.PublicKey)), mesh, &fakeFeedProposer{}, nil, time.Now, slog.New(slog.DiscardHandler))
	skipped := func(reason string) float64 { return counterValue(t, p.skipped.WithLabelValues(reason)) }
	other := feedReport(t, "203.0.113.80", 90)
	other.Source = "other-feed"
	p.offer(sealedReport(t, pubKey, 1, other))
	p.offer(sealedReport(t, rogueKey, 1, feedReport(t, "203.0.113.81", 90)))
	p.offer(sealedReport(t, pubKey, 2, feedReport(t, "2001:db8::1", 90)))
	p.offer(sealedReport(t, pubKey, 3, feedReport(t, "127.0.0.1", 90)))
	p.offer(sealedReport(t, pubKey, 4, feedReport(t, "1.1.1.1", 90)))
	for reason, want := range map[string]float64{"no_feed_policy": 1, "not_publisher": 1, "feed_type": 1, "floor": 1, "warninglist": 1} {
		if got := skipped(reason); got != want {
			t.Errorf("skipped %s: %v, want %v", reason, got, want)
		}
	}
	if _, _, ok := p.take(); ok {
		t.Fatal("something was queued")
	}
	p.offer(sealedReport(t, pubKey, 5, feedReport(t, "203.0.113.82", 90)))
	p.offer(sealedReport(t, pubKey, 6, feedReport(t, "203.0.113.82", 95)))
	if skipped("in_flight") != 1 {
		t.Fatalf("a duplicate in flight: in_flight %v, want 1", skipped("in_flight"))
	}
	pr, _, ok := p.take()
	if !ok || pr.block.Indicator.Value != "203.0.113.82" || pr.feed != "feodo" {
		t.Fatalf("take: %+v %v", pr, ok)
	}
	if env, err := intel.Open(pr.report); err != nil || env.Seq != 5 {
		t.Fatalf("the proof is not the report's envelope as signed: %v", err)
	}
}

// A feed's queue is bounded (drops counted) and its proposals are rate
// limited; the clock is the test's.
func TestPromoterQueueAndRate(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	mesh := &fakeFeedMesh{policies: []intel.FeedPolicy{feedPolicy()}, publishers: map[string]bool{intel.NodeID(key.Public().(ed25519.PublicKey)): true}}
	now := time.Now().UTC()
	p := newPromoter(intel.NodeID(key.Public().(ed25519.PublicKey)), mesh, &fakeFeedProposer{}, nil, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	for i := range promoteQueueSize + 10 {
		p.offer(sealedReport(t, key, uint64(i+1), feedReport(t, netip.AddrFrom4(addrN(i)).String(), 90)))
	}
	if got := counterValue(t, p.results.WithLabelValues("feodo", "dropped")); got != 10 {
		t.Fatalf("dropped %v, want 10", got)
	}
	taken := 0
	for {
		_, wait, ok := p.take()
		if !ok {
			if wait <= 0 {
				t.Fatal("nothing taken and no wait, with items queued")
			}
			break
		}
		taken++
	}
	if taken != promoteBurst {
		t.Fatalf("took %d at once, want the burst %d", taken, promoteBurst)
	}
	now = now.Add(time.Second) // the rate refills
	for {
		if _, _, ok := p.take(); !ok {
			break
		}
		taken++
	}
	if taken != promoteBurst+promoteRate {
		t.Fatalf("took %d after a second, want %d", taken, promoteBurst+promoteRate)
	}
}

func addrN(i int) (a [4]byte) {
	return [4]byte{198, 18, byte(i >> 8), byte(i)}
}

// counterValue reads one counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A feed received before its policy: once the operator sets the policy,
// the stored reports are promoted.
func TestNodePromotesStoredReportsWhenPolicyArrives(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.Gossip.Indicators = true })
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	early, low := feedReport(t, "203.0.113.72", 90), feedReport(t, "203.0.113.73", 10)
	for _, r := range []intel.IndicatorReport{early, low} {
		if _, err := n.PublishReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Consensus().ProposeOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpSetFeedPolicy, FeedPolicy: new(feedPolicy())})); err != nil {
		t.Fatalf("set the feed policy: %v", err)
	}
	id := intel.PolicyID(intel.ActionBlock, early.Indicator)
	waitFor(t, "the stored report's feed block", func() bool { _, ok := n.Consensus().Policy(id, time.Now()); return ok })
	waitFor(t, "the low one considered", func() bool { return counterValue(t, n.promote.skipped.WithLabelValues("feed_confidence")) >= 1 })
	if _, ok := n.Consensus().Policy(intel.PolicyID(intel.ActionBlock, low.Indicator), time.Now()); ok {
		t.Fatal("the low-confidence report was blocked")
	}
}

// fakeReports is a report log holding sealed reports.
type fakeReports struct {
	mu   sync.Mutex
	recs []store.ReportRecord
	raw  map[uint64][]byte
}

func (f *fakeReports) IndicatorReports(int) ([]store.ReportRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs, nil
}
func (f *fakeReports) GetEnvelope(_ string, seq uint64) ([]byte, error) {
	return f.raw[seq], nil
}

// What a full queue dropped is proposed later: the promoter rescans the
// stored reports and waits for room instead of dropping.
func TestPromoterRescansAfterDrops(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	origin := intel.NodeID(key.Public().(ed25519.PublicKey))
	mesh := &fakeFeedMesh{policies: []intel.FeedPolicy{feedPolicy()}, publishers: map[string]bool{origin: true}}
	prop := &fakeFeedProposer{block: make(chan struct{})}
	reports := &fakeReports{raw: map[uint64][]byte{}}
	p := newPromoter(origin, mesh, prop, reports, time.Now, slog.New(slog.DiscardHandler))
	p.rate, p.burst = 1e9, 1e9
	total := promoteQueueSize + promoteWorkers + 50
	for i := range total {
		r := feedReport(t, netip.AddrFrom4(addrN(i)).String(), 90)
		env := sealedReport(t, key, uint64(i+1), r)
		reports.recs = append(reports.recs, store.ReportRecord{Origin: origin, Seq: env.Seq, Report: r})
		reports.raw[env.Seq] = env.Raw
	}
	all := reports.recs
	reports.recs = nil // the policy's first rescan finds nothing
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the policy's rescan", func() bool { return counterValue(t, p.rescans) >= 1 })
	reports.mu.Lock()
	reports.recs = all
	reports.mu.Unlock()
	for _, rec := range all {
		env, err := intel.Open(reports.raw[rec.Seq])
		if err != nil {
			t.Fatal(err)
		}
		p.offer(env)
	}
	if got := counterValue(t, p.results.WithLabelValues("feodo", "dropped")); got == 0 {
		t.Fatal("nothing dropped: the queue is not bounded")
	}
	close(prop.block) // the proposals go through from now on
	waitFor(t, "every report proposed", func() bool {
		prop.mu.Lock()
		defer prop.mu.Unlock()
		seen := map[string]bool{}
		for _, v := range prop.got {
			seen[v] = true
		}
		return len(seen) == total
	})
}

// Another node's report is proposed only after promoteDefer, and not at
// all when its block was committed meanwhile (by its publisher); this
// node's own reports go first.
func TestPromoterDefersOthersReports(t *testing.T) {
	pubKey := ed25519.NewKeyFromSeed(make([]byte, 32))
	selfKey := ed25519.NewKeyFromSeed(append(make([]byte, 31), 2))
	self := intel.NodeID(selfKey.Public().(ed25519.PublicKey))
	mesh := &fakeFeedMesh{policies: []intel.FeedPolicy{feedPolicy()}, blocked: map[string]bool{},
		publishers: map[string]bool{intel.NodeID(pubKey.Public().(ed25519.PublicKey)): true, self: true}}
	now := time.Now().UTC()
	p := newPromoter(self, mesh, &fakeFeedProposer{}, nil, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	other1, other2 := feedReport(t, "203.0.113.90", 90), feedReport(t, "203.0.113.91", 90)
	p.offer(sealedReport(t, pubKey, 1, other1))
	p.offer(sealedReport(t, pubKey, 2, other2))
	if _, wait, ok := p.take(); ok || wait <= 0 || wait > promoteDefer {
		t.Fatalf("another node's report taken at once (ok %v, wait %s)", ok, wait)
	}
	p.offer(sealedReport(t, selfKey, 1, feedReport(t, "203.0.113.92", 90)))
	if pr, _, ok := p.take(); !ok || pr.block.Indicator.Value != "203.0.113.92" {
		t.Fatalf("own report not taken first: %+v %v", pr, ok)
	}
	// The publisher's block of other1 is committed meanwhile.
	mesh.mu.Lock()
	mesh.blocked[intel.PolicyID(intel.ActionBlock, other1.Indicator)] = true
	mesh.mu.Unlock()
	now = now.Add(promoteDefer)
	pr, _, ok := p.take()
	if !ok || pr.block.Indicator != other2.Indicator {
		t.Fatalf("after the delay: %+v %v, want the block of %s only", pr, ok, other2.Indicator)
	}
	if got := counterValue(t, p.skipped.WithLabelValues("already_blocked")); got != 1 {
		t.Fatalf("already_blocked counted %v times, want 1", got)
	}
	if _, _, ok := p.take(); ok {
		t.Fatal("more was taken")
	}
}
