package node_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/store"
	"github.com/meshward/meshward/testnet"
)

// A feed on a real three-node mesh: the feed (a local file) is added on
// every node once the mesh has formed, as an operator configures feeds
// alike on the servers; exactly one node (the feed's fetcher, the same
// on every node) fetches it, and every node receives its entries as
// indicator reports whose source is the feed's name. A re-poll of the
// unchanged file publishes nothing; a new line is published once and
// reaches every node. A feed configured on its fetcher alone reaches
// every node too.
func TestFeedReachesEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := testnet.Start(ctx, testnet.Options{Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	src := filepath.Join(t.TempDir(), "mesh-list.txt")
	lines := "# mesh test feed\n198.51.100.10\n198.51.100.11 ; scanner\nc2.mesh-test.example\n"
	if err := os.WriteFile(src, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	const name = "mesh-list"
	fetcher := m.Nodes[0].FeedFetcher(name)
	for i, n := range m.Nodes {
		if got := n.FeedFetcher(name); got != fetcher || got == "" {
			t.Fatalf("node %d names fetcher %q, node 0 %q", i, got, fetcher)
		}
	}
	var fetcherNode *node.Node
	for _, n := range m.Nodes {
		if err := n.AddFeed(ctx, feeds.Config{Name: name, Path: src, Confidence: 75, TTL: 24 * time.Hour, Interval: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if n.ID() == fetcher {
			fetcherNode = n
		}
	}
	if fetcherNode == nil {
		t.Fatalf("fetcher %s is not a node of the mesh", fetcher)
	}

	want := map[string]bool{"198.51.100.10": true, "198.51.100.11": true, "c2.mesh-test.example": true}
	reached := func(n *node.Node, count int) bool {
		return len(feedReports(t, n, name)) >= count
	}
	for i, n := range m.Nodes {
		if err := testnet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			return reached(n, 3), "the feed's three reports"
		}); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		recs := feedReports(t, n, name)
		if len(recs) != 3 {
			t.Errorf("node %d holds %d reports of the feed, want 3", i, len(recs))
		}
		for _, r := range recs {
			if r.Origin != fetcher || !want[r.Report.Indicator.Value] || r.Report.Confidence != 75 {
				t.Errorf("node %d holds %+v from %s, want the feed's entries from %s", i, r.Report, r.Origin, fetcher)
			}
		}
	}
	// The other nodes never polled the feed.
	if err := testnet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		st := fetcherNode.FeedStatus()
		return len(st) == 1 && st[0].Last.Result != "", "the fetcher's poll to end"
	}); err != nil {
		t.Fatal(err)
	}
	for i, n := range m.Nodes {
		st := n.FeedStatus()
		if len(st) != 1 {
			t.Fatalf("node %d feeds %+v", i, st)
		}
		if polled := !st[0].LastPoll.IsZero(); polled != (n == fetcherNode) {
			t.Errorf("node %d (fetcher %t) polled: %t", i, n == fetcherNode, polled)
		}
	}

	res, err := fetcherNode.SyncFeed(ctx, name)
	if err != nil || res.Result != feeds.ResultOK || res.Published != 0 || res.Unchanged != 3 {
		t.Fatalf("re-poll of the unchanged file: %+v, %v", res, err)
	}
	if err := os.WriteFile(src, []byte(lines+"198.51.100.12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = fetcherNode.SyncFeed(ctx, name)
	if err != nil || res.Published != 1 || res.Unchanged != 3 {
		t.Fatalf("poll after one new line: %+v, %v", res, err)
	}
	for i, n := range m.Nodes {
		if err := testnet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			return reached(n, 4), "the new line's report"
		}); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if got := len(feedReports(t, n, name)); got != 4 {
			t.Errorf("node %d holds %d reports of the feed, want 4", i, got)
		}
	}
	// A feed configured on one node only, its fetcher, reaches every node.
	const solo = "one-node-list"
	soloSrc := filepath.Join(t.TempDir(), "one.txt")
	if err := os.WriteFile(soloSrc, []byte("203.0.113.77\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	soloFetcher := m.Nodes[0].FeedFetcher(solo)
	for _, n := range m.Nodes {
		if n.ID() == soloFetcher {
			if err := n.AddFeed(ctx, feeds.Config{Name: solo, Path: soloSrc}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, n := range m.Nodes {
		if err := testnet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			return len(feedReports(t, n, solo)) >= 1, "the one-node feed's report"
		}); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if recs := feedReports(t, n, solo); len(recs) != 1 || recs[0].Origin != soloFetcher || recs[0].Report.Indicator.Value != "203.0.113.77" {
			t.Errorf("node %d holds %+v", i, recs)
		}
	}
}

func feedReports(t *testing.T, n *node.Node, source string) []store.ReportRecord {
	t.Helper()
	recs, err := n.Store().IndicatorReports(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.ReportRecord
	for _, r := range recs {
		if r.Report.Source == source {
			out = append(out, r)
		}
	}
	return out
}
