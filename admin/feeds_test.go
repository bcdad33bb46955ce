package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
)

// An import batch is checked whole before anything is published: one bad
// report refuses the batch naming its index, and nothing is stored; a
// good batch is published with each report's own source; only an admin
// may import; the export route lists what the node holds.
func TestImportAllOrNothing(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	node := admintest.NewNode(nodeID)
	node.Clock = func() time.Time { return now }
	env := admintest.Start(t, node, admin.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	adm := env.Client(t, env.AdminToken)
	rt := env.NewToken(t, admin.RoleResponder, "oncall")
	responder := env.Client(t, rt.Secret)

	mk := func(v string) intel.IndicatorReport {
		ind, err := intel.ParseIndicator(v)
		if err != nil {
			t.Fatal(err)
		}
		return intel.IndicatorReport{Indicator: ind, Source: "abuse-list", Confidence: 70, ValidFrom: now, ValidUntil: now.Add(24 * time.Hour)}
	}
	bad := mk("203.0.113.3")
	bad.Confidence = 300
	batch := []intel.IndicatorReport{mk("203.0.113.1"), mk("203.0.113.2"), bad}

	_, err := responder.Import(ctx, batch[:2])
	wantAPIError(t, err, 403, "forbidden")
	_, err = adm.Import(ctx, batch)
	wantAPIError(t, err, 400, "bad_request")
	if !strings.Contains(err.Error(), "reports[2]") || !strings.Contains(err.Error(), "confidence") {
		t.Fatalf("error %v does not name reports[2] and its field", err)
	}
	if got, _ := adm.IntelReports(ctx, 0, nil); len(got) != 0 {
		t.Fatalf("%d reports stored after a refused batch", len(got))
	}
	_, err = adm.Import(ctx, nil)
	wantAPIError(t, err, 400, "bad_request")

	res, err := adm.Import(ctx, batch[:2])
	if err != nil || res.Published != 2 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	got, err := adm.IntelReports(ctx, 0, nil)
	if err != nil || len(got) != 2 || got[0].Report.Source != "abuse-list" {
		t.Fatalf("reports %+v, %v", got, err)
	}
	inactive := false
	if got, err := adm.IntelReports(ctx, 0, &inactive); err != nil || len(got) != 0 {
		t.Fatalf("inactive reports %+v, %v", got, err)
	}
}

// A node that runs no feeds answers the feed routes with 503; the feed
// body is validated before it reaches the node.
func TestFeedRoutesWithoutFeeds(t *testing.T) {
	env := admintest.Start(t, admintest.NewNode(nodeID), admin.Options{})
	adm := env.Client(t, env.AdminToken)
	ctx := context.Background()
	_, err := adm.Feeds(ctx)
	wantAPIError(t, err, 503, "unavailable")
	_, err = adm.AddFeed(ctx, feeds.Config{Name: "x", Path: "/tmp/x"})
	wantAPIError(t, err, 503, "unavailable")
	_, err = adm.SyncFeed(ctx, "x")
	wantAPIError(t, err, 503, "unavailable")
}
