package testnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/node"
)

// FeedScenarioOptions configure RunFeedPolicy.
type FeedScenarioOptions struct {
	Options
	// High and Low are how many addresses the feed lists at confidence 90
	// and 40 (defaults 5 and 3).
	High, Low int
}

// FeedReport is what RunFeedPolicy measured.
type FeedReport struct {
	Nodes     int `json:"nodes"`
	Published int `json:"published"`
	// ReportsEverywhere: every node holds every report published.
	ReportsEverywhere bool `json:"reports_everywhere"`
	// HighBlockedOn counts, per high-confidence entry, the nodes holding
	// its mesh-wide block; the least of them.
	HighBlockedOnMin int `json:"high_blocked_on_min"`
	// LowBlocked and WarninglistedBlocked count the blocks of low
	// confidence and warninglisted entries on any node (want 0).
	LowBlocked           int `json:"low_blocked"`
	WarninglistedBlocked int `json:"warninglisted_blocked"`
	// WarninglistSkips are the warninglisted entries each node declined
	// to promote, summed over the nodes.
	WarninglistSkips float64 `json:"warninglist_skips"`
	// ForgedBlocked counts the blocks, on any node, of the entry another
	// member (not a publisher) published under the feed's name (want 0);
	// ForgedSkips the nodes' refusals to promote it (not_publisher).
	ForgedBlocked int     `json:"forged_blocked"`
	ForgedSkips   float64 `json:"forged_skips"`
	// BlockedEverywhereMs is the time from the first report's publication
	// to every high-confidence entry blocked on every node.
	BlockedEverywhereMs float64 `json:"blocked_everywhere_ms"`
}

// OK reports whether the feed policy did what it should.
func (r *FeedReport) OK() bool {
	return r.ReportsEverywhere && r.HighBlockedOnMin == r.Nodes && r.LowBlocked == 0 && r.WarninglistedBlocked == 0 && r.ForgedBlocked == 0
}

// FeedWarninglisted are the warninglisted entries RunFeedPolicy's feed
// lists at high confidence: a public resolver and a top domain.
var FeedWarninglisted = []string{"8.8.8.8", "www.google.com"}

// RunFeedPolicy starts a mesh with indicator gossip on and one threat
// feed configured alike on every node (intel.feeds: a STIX 2.1 bundle
// file listing High addresses at confidence 90, Low at 40, and
// FeedWarninglisted at 95), which the feed's fetcher (one voter, chosen
// by rendezvous hashing of the feed's name) fetches and publishes as
// indicator reports. The operator sets a feed policy whose only publisher
// is that fetcher (confidence 80 and more, addresses and domains, blocks
// of an hour); another member forges one entry under the feed's name at
// confidence 100. It waits until every node holds every report and every
// high-confidence entry is blocked on every node, then checks that
// nothing else was blocked.
func RunFeedPolicy(ctx context.Context, o FeedScenarioOptions) (*FeedReport, error) {
	if o.High == 0 {
		o.High = 5
	}
	if o.Low == 0 {
		o.Low = 3
	}
	type entry struct {
		ind  intel.Indicator
		conf int
	}
	var high, other []entry
	for k := range o.High {
		high = append(high, entry{intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{198, 18, byte(k >> 8), byte(k)})), 90})
	}
	for k := range o.Low {
		other = append(other, entry{intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)})), 40})
	}
	for _, v := range FeedWarninglisted {
		ind, err := intel.ParseIndicator(v)
		if err != nil {
			return nil, err
		}
		other = append(other, entry{ind, 95})
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "meshward-feed-scenario-")
		if err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	start := time.Now()
	feedPath := filepath.Join(dir, "testnet-feed.json")
	var objs []map[string]any
	for i, e := range append(other, high...) {
		object := "ipv4-addr"
		if e.ind.Type == intel.Domain {
			object = "domain-name"
		}
		stamp := start.UTC().Add(-time.Minute).Format(time.RFC3339)
		objs = append(objs, map[string]any{"type": "indicator", "spec_version": "2.1",
			"id":      fmt.Sprintf("indicator--00000000-0000-4000-8000-%012x", i+1),
			"created": stamp, "modified": stamp, "valid_from": stamp, "pattern_type": "stix",
			"pattern":    fmt.Sprintf("[%s:value = '%s']", object, e.ind.Value),
			"confidence": e.conf})
	}
	bundle, err := json.Marshal(map[string]any{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000001", "objects": objs})
	if err != nil {
		return nil, fmt.Errorf("testnet: feed bundle: %w", err)
	}
	if err := os.WriteFile(feedPath, bundle, 0o600); err != nil {
		return nil, fmt.Errorf("testnet: feed bundle: %w", err)
	}
	feed := feeds.Config{Name: "testnet-feed", Path: feedPath, Format: feeds.FormatSTIX, Interval: time.Hour, Confidence: 50, TTL: time.Hour}
	configure := o.Configure
	o.Configure = func(i int, cfg *node.Config) {
		cfg.Gossip.Indicators = true
		cfg.Intel.Feeds = append(cfg.Intel.Feeds, feed)
		if configure != nil {
			configure(i, cfg)
		}
	}
	m, err := Start(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var publisher *node.Node
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		id := m.Nodes[0].FeedFetcher(feed.Name)
		for _, n := range m.Nodes {
			if n.ID() == id {
				publisher = n
				return true, ""
			}
		}
		return false, "no node fetches the feed yet"
	}); err != nil {
		return nil, err
	}
	policy := intel.FeedPolicy{Name: "testnet-feed", Source: "testnet-feed", MinConfidence: 80,
		Types: []intel.IndicatorType{intel.IPv4, intel.Domain}, Action: intel.ActionBlock, TTLSeconds: 3600,
		Publishers: []string{publisher.ID()}, Enabled: true}
	if err := m.Operator().Submit(ctx, len(m.Nodes)-1, intel.OperatorCommand{Op: intel.OpSetFeedPolicy, FeedPolicy: &policy}); err != nil {
		return nil, err
	}
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			if len(n.Consensus().FeedPolicies()) != 1 {
				return false, fmt.Sprintf("node %d does not hold the feed policy yet", i)
			}
		}
		return true, ""
	}); err != nil {
		return nil, err
	}

	// The feed's reports are counted from the start: the fetcher may have
	// published them before the policy arrived (the nodes then promote
	// the stored reports when it does).
	before := make([]uint64, len(m.Nodes))
	forged := intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{203, 0, 113, 250}))
	for _, n := range m.Nodes {
		if n == publisher {
			continue
		}
		r := intel.IndicatorReport{Indicator: forged, Source: policy.Source, Confidence: 100, ValidFrom: start.UTC().Add(-time.Minute)}
		if _, err := n.PublishReport(ctx, r); err != nil {
			return nil, fmt.Errorf("testnet: publish the forged entry: %w", err)
		}
		break
	}
	rep := &FeedReport{Nodes: len(m.Nodes), Published: len(high) + len(other)}
	if len(m.Nodes) > 1 {
		rep.Published++
	}
	blockedOn := func(ind intel.Indicator) int {
		c := 0
		for _, n := range m.Nodes {
			if _, ok := n.Consensus().Policy(intel.PolicyID(intel.ActionBlock, ind), time.Now()); ok {
				c++
			}
		}
		return c
	}
	err = Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			if got := n.Stats().IndicatorReports - before[i]; got < uint64(rep.Published) {
				return false, fmt.Sprintf("node %d holds %d of %d reports", i, got, rep.Published)
			}
		}
		for _, e := range high {
			if c := blockedOn(e.ind); c < len(m.Nodes) {
				return false, fmt.Sprintf("%s is blocked on %d of %d nodes", e.ind, c, len(m.Nodes))
			}
		}
		return true, ""
	})
	rep.BlockedEverywhereMs = ms(time.Since(start))
	if err != nil {
		return rep, err
	}
	// Every node has taken every report in; what it declined is counted.
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		rep.WarninglistSkips, rep.ForgedSkips = 0, 0
		for _, n := range m.Nodes {
			rep.WarninglistSkips += counterSum(n, "meshward_feed_promotion_skipped_total", "reason", "warninglist")
			rep.ForgedSkips += counterSum(n, "meshward_feed_promotion_skipped_total", "reason", "not_publisher")
		}
		want := float64(len(FeedWarninglisted) * len(m.Nodes))
		if rep.WarninglistSkips < want {
			return false, fmt.Sprintf("%v warninglist skips counted, want %v", rep.WarninglistSkips, want)
		}
		if len(m.Nodes) > 1 && rep.ForgedSkips < float64(len(m.Nodes)) {
			return false, fmt.Sprintf("%v not_publisher skips counted, want %d", rep.ForgedSkips, len(m.Nodes))
		}
		return true, ""
	}); err != nil {
		return rep, err
	}
	rep.ReportsEverywhere = true
	rep.HighBlockedOnMin = len(m.Nodes)
	for _, e := range high {
		rep.HighBlockedOnMin = min(rep.HighBlockedOnMin, blockedOn(e.ind))
	}
	rep.ForgedBlocked = blockedOn(forged)
	for _, e := range other {
		if blockedOn(e.ind) > 0 {
			if e.conf >= policy.MinConfidence {
				rep.WarninglistedBlocked++
			} else {
				rep.LowBlocked++
			}
		}
	}
	return rep, nil
}

// counterSum sums the counter family name's series on node n whose label
// key has value.
func counterSum(n *node.Node, name, key, value string) float64 {
	mfs, err := n.Metrics().Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == key && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
