package testnet

import (
	"context"
	"testing"
	"time"
)

// A feed published on one node reaches every node; the operator's feed
// policy turns its high-confidence entries into mesh-wide blocks on every
// node, and neither the low-confidence entries nor the warninglisted ones
// (a public resolver, a top domain) are ever blocked, nor the entry
// another member forges under the feed's name.
func TestFeedPolicyBlocksMeshWide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunFeedPolicy(ctx, FeedScenarioOptions{Options: Options{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t)}, High: 4, Low: 2})
	if err != nil {
		t.Fatalf("scenario: %v (report %+v)", err, rep)
	}
	if !rep.OK() || rep.HighBlockedOnMin != 3 || rep.LowBlocked != 0 || rep.WarninglistedBlocked != 0 || rep.ForgedBlocked != 0 || rep.ForgedSkips < 3 || rep.Published != 9 {
		t.Fatalf("report %+v", rep)
	}
	t.Logf("9 reports published (8 by the publisher, 1 forged); 4 blocks on all 3 nodes %.0f ms after the first; %v warninglist and %v not_publisher skips counted", rep.BlockedEverywhereMs, rep.WarninglistSkips, rep.ForgedSkips)
}

// BenchmarkFeedPromotion publishes a feed of b.N high-confidence entries
// on one node of a 3-node mesh and reports the time until every one is
// blocked on every node (the proposer's rate limit included:
// promoteRate a second after a burst).
func BenchmarkFeedPromotion(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := RunFeedPolicy(ctx, FeedScenarioOptions{Options: Options{Nodes: 3, Dir: b.TempDir()}, High: b.N, Low: 1})
	if err != nil {
		b.Fatalf("scenario: %v", err)
	}
	if !rep.OK() {
		b.Fatalf("report %+v", rep)
	}
	b.ReportMetric(rep.BlockedEverywhereMs, "ms-blocked-everywhere")
	b.ReportMetric(float64(b.N)/(rep.BlockedEverywhereMs/1000), "blocks/s")
}
