package admin_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/risk"
	"github.com/meshward/meshward/store"
)

// riskNode is the fake node with a risk score (admin.RiskService) and a
// fixed list of sightings, most recent first.
type riskNode struct {
	*admintest.Node
	recs  []store.SightingRecord
	calls int
}

func (n *riskNode) Sightings(_ context.Context, limit int) ([]store.SightingRecord, error) {
	return n.recs[:min(limit, len(n.recs))], nil
}

func (n *riskNode) SightingsFor(_ context.Context, ind intel.Indicator) ([]store.SightingRecord, error) {
	var out []store.SightingRecord
	for _, r := range n.recs {
		if r.Sighting.Indicator == ind {
			out = append(out, r)
		}
	}
	return out, nil
}

func (n *riskNode) Risk(ind intel.Indicator, recs []store.SightingRecord, _ []store.ReportRecord, now time.Time) risk.Result {
	n.calls++
	in := risk.Inputs{Now: now}
	for _, r := range recs {
		in.Sightings = append(in.Sightings, risk.Sighting{Site: r.Origin, Trust: risk.MaxTrust, Severity: r.Sighting.Severity,
			Confidence: r.Sighting.Confidence, Seen: r.Sighting.LastSeen})
	}
	return risk.Score(in)
}

var riskNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// newRiskNode holds n indicators; indicator i is sighted by 1 + i%4
// sites, the higher i the more recent, so that the most recent are not
// the riskiest.
func newRiskNode(n int) *riskNode {
	rn := &riskNode{Node: admintest.NewNode("12D3KooWRiskTestNodeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")}
	for i := n - 1; i >= 0; i-- {
		ind := intel.IndicatorFromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		for s := range 1 + i%4 {
			seen := riskNow.Add(-time.Duration(n-i) * time.Second)
			rn.recs = append(rn.recs, store.SightingRecord{Origin: fmt.Sprintf("site-%d", s), Seq: uint64(i*4 + s), Sent: seen, Received: seen,
				Sighting: intel.Sighting{Indicator: ind, Detector: "d", Severity: intel.SeverityHigh, Confidence: 80, Count: 1, FirstSeen: seen, LastSeen: seen}})
		}
	}
	return rn
}

func startRiskAPI(t testing.TB, node admin.Node) *admin.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv, err := admin.New(admin.Options{Node: node, Store: admintest.OpenStore(t), SocketPath: sock, Now: func() time.Time { return riskNow }})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tok, err := admin.ReadTokenFile(srv.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := admin.NewClient(sock, tok, admin.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// sort=risk orders every candidate by score, highest first, and returns
// the page; the default order scores the page only; a bad sort or at is
// refused naming the parameter; a node without a score refuses sort=risk.
func TestIOCsSortRisk(t *testing.T) {
	node := newRiskNode(40)
	c := startRiskAPI(t, node)
	ctx := context.Background()
	list, err := c.IOCs(ctx, admin.IOCQuery{Sort: "risk", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 10 || node.calls != 40 {
		t.Fatalf("%d listed, %d scored; want 10 of 40 candidates", len(list), node.calls)
	}
	for i, ioc := range list {
		if ioc.Risk == nil || ioc.Origins != 4 || (i > 0 && *ioc.Risk > *list[i-1].Risk) {
			t.Fatalf("not the riskiest first: %+v", list)
		}
	}
	node.calls = 0
	recent, err := c.IOCs(ctx, admin.IOCQuery{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 5 || node.calls != 5 || recent[0].Risk == nil {
		t.Fatalf("default order: %d listed, %d scored", len(recent), node.calls)
	}
	d, err := c.IOCAt(ctx, list[0].Indicator.Value, "", riskNow.Add(48*time.Hour))
	if err != nil || d.Risk == nil || !d.Risk.At.Equal(riskNow.Add(48*time.Hour)) || d.Risk.Score >= *list[0].Risk {
		t.Fatalf("detail at +48h: %+v, %v; want a lower score than %d, at the time asked", d.Risk, err, *list[0].Risk)
	}
	for _, q := range []admin.IOCQuery{{Sort: "loudest"}} {
		if _, err := c.IOCs(ctx, q); err == nil || !strings.Contains(err.Error(), "sort") || !strings.Contains(err.Error(), "400") {
			t.Errorf("sort %q: %v, want 400 naming sort", q.Sort, err)
		}
	}

	plain := startRiskAPI(t, admintest.NewNode("12D3KooWPlainNodeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
	if _, err := plain.IOCs(ctx, admin.IOCQuery{Sort: "risk"}); err == nil || !strings.Contains(err.Error(), "does not score") {
		t.Errorf("sort=risk without a score: %v", err)
	}
}

// BenchmarkIOCsSortRisk: GET /v1/iocs?sort=risk over iocScan (10000)
// sightings of 4000 indicators, through the socket.
func BenchmarkIOCsSortRisk(b *testing.B) {
	node := newRiskNode(4000)
	c := startRiskAPI(b, node)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.IOCs(ctx, admin.IOCQuery{Sort: "risk", Limit: 100}); err != nil {
			b.Fatal(err)
		}
	}
}
