package admin_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// reportEnv serves a node holding an expired report of another node and
// a live one of its own, on a fixed clock.
func reportEnv(t *testing.T, now time.Time) *admintest.Env {
	t.Helper()
	node := admintest.NewNode(nodeID)
	node.Clock = func() time.Time { return now }
	node.MemberSet = append(node.MemberSet, admin.Member{ID: otherNode, Site: "branch"})
	ind, err := intel.ParseIndicator("198.51.100.23")
	if err != nil {
		t.Fatal(err)
	}
	node.AddReport(store.ReportRecord{Origin: otherNode, Seq: 7, Received: now.Add(-2 * time.Hour), Sent: now.Add(-2 * time.Hour),
		Report: intel.IndicatorReport{Indicator: ind, Source: "feed:abuse", Confidence: 60, Labels: []string{"scanner"},
			ValidFrom: now.Add(-48 * time.Hour), ValidUntil: now.Add(-time.Hour)}})
	node.AddReport(store.ReportRecord{Origin: nodeID, Seq: 3, Received: now.Add(-time.Hour), Sent: now.Add(-time.Hour),
		Report: intel.IndicatorReport{Indicator: ind, Source: "operator:alice", Confidence: 90, ValidFrom: now.Add(-time.Hour)}})
	return admintest.Start(t, node, admin.Options{Now: func() time.Time { return now }})
}

func TestPublishReport(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	env := reportEnv(t, now)
	ctx := context.Background()
	adm := env.Client(t, env.AdminToken)
	vt, rt := env.NewToken(t, admin.RoleViewer, "grafana"), env.NewToken(t, admin.RoleResponder, "oncall")
	viewer, responder := env.Client(t, vt.Secret), env.Client(t, rt.Secret)
	req := admin.ReportRequest{Indicator: " Evil.Example. ", Confidence: 75, Labels: []string{"c2", "botnet"},
		Technique: "T1071", Description: "beaconing every 60s", ValidFor: "720h"}

	// A viewer may not publish.
	_, err := viewer.PublishReport(ctx, req)
	wantAPIError(t, err, 403, "forbidden")

	// Bad reports: 400 naming the field.
	for _, tc := range []struct {
		mutate func(*admin.ReportRequest)
		field  string
	}{
		{func(r *admin.ReportRequest) { r.Indicator = "not an indicator!" }, "indicator"},
		{func(r *admin.ReportRequest) { r.Indicator, r.Type = "evil.example", "ipv4" }, "indicator"},
		{func(r *admin.ReportRequest) { r.Confidence = 101 }, "confidence"},
		{func(r *admin.ReportRequest) { r.Confidence = -1 }, "confidence"},
		{func(r *admin.ReportRequest) { r.Labels = []string{"c2", "c2"} }, "labels[1]"},
		{func(r *admin.ReportRequest) { r.Labels = []string{""} }, "labels[0]"},
		{func(r *admin.ReportRequest) { r.Technique = strings.Repeat("T", intel.MaxReportTechnique+1) }, "technique"},
		{func(r *admin.ReportRequest) { r.Description = strings.Repeat("d", intel.MaxReportDescription+1) }, "description"},
		{func(r *admin.ReportRequest) { r.ValidFor = "a month" }, "valid_for"},
		{func(r *admin.ReportRequest) { r.ValidFor = "-1h" }, "valid_for"},
	} {
		bad := req
		bad.Labels = slices.Clone(req.Labels)
		tc.mutate(&bad)
		_, err := responder.PublishReport(ctx, bad)
		wantAPIError(t, err, 400, "bad_request")
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("bad %s: %v, want the field named", tc.field, err)
		}
	}
	if status, body := rawRequest(t, env.Socket, "POST", "/v1/reports", rt.Secret, `{"indicator":"192.0.2.1","severity":3}`); status != 400 {
		t.Fatalf("unknown field: %d %s, want 400", status, body)
	}

	// A responder may.
	got, err := responder.PublishReport(ctx, req)
	if err != nil {
		t.Fatalf("responder publish: %v", err)
	}
	want := intel.IndicatorReport{Indicator: intel.Indicator{Type: intel.Domain, Value: "evil.example"}, Source: "operator:oncall",
		Confidence: 75, Labels: []string{"c2", "botnet"}, Technique: "T1071", Description: "beaconing every 60s",
		ValidFrom: now, ValidUntil: now.Add(720 * time.Hour)}
	if got.Origin != nodeID || got.Seq != 1 || !got.Active || got.Site != "test" {
		t.Fatalf("published %+v", got)
	}
	if g := got.Report; g.Indicator != want.Indicator || g.Source != want.Source || g.Confidence != want.Confidence ||
		!slices.Equal(g.Labels, want.Labels) || g.Technique != want.Technique || g.Description != want.Description ||
		!g.ValidFrom.Equal(want.ValidFrom) || !g.ValidUntil.Equal(want.ValidUntil) {
		t.Fatalf("published report %+v, want %+v", g, want)
	}
	// No valid_for: no end.
	got, err = adm.PublishReport(ctx, admin.ReportRequest{Indicator: "192.0.2.1", Confidence: 0})
	if err != nil || got.Seq != 2 || !got.Report.ValidUntil.IsZero() || got.Report.Source != "operator:"+admin.LocalAdminName {
		t.Fatalf("publish without valid_for: %+v, %v", got, err)
	}

	// The audit trail has every attempt, the denied one too.
	es, err := viewer.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var results []string
	for _, e := range es {
		if e.Action == "report.publish" {
			results = append(results, e.Result)
			if e.Result == "ok" && strings.Contains(e.Actor, "oncall") &&
				(e.Target != "domain:evil.example seq 1" || !strings.Contains(e.Detail, "labels=c2,botnet")) {
				t.Errorf("publish audited as %+v", e)
			}
		}
	}
	if len(results) != 14 || results[0] != "ok" || results[1] != "ok" || results[len(results)-1] != "denied" {
		t.Fatalf("audit results (newest first) %v: want ok, ok, 11 errors, denied", results)
	}
}

func TestListReports(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	env := reportEnv(t, now)
	ctx := context.Background()
	vt := env.NewToken(t, admin.RoleViewer, "grafana")
	viewer := env.Client(t, vt.Secret)

	rs, err := viewer.Reports(ctx, admin.ReportQuery{})
	if err != nil || len(rs) != 2 {
		t.Fatalf("reports: %+v, %v", rs, err)
	}
	if rs[0].Origin != nodeID || rs[0].Seq != 3 || !rs[0].Active || rs[0].Site != "test" ||
		rs[1].Origin != otherNode || rs[1].Seq != 7 || rs[1].Active || rs[1].Site != "branch" {
		t.Fatalf("reports (newest first): %+v", rs)
	}
	yes, no := true, false
	if rs, err := viewer.Reports(ctx, admin.ReportQuery{Active: &yes}); err != nil || len(rs) != 1 || rs[0].Seq != 3 {
		t.Fatalf("active: %+v, %v", rs, err)
	}
	if rs, err := viewer.Reports(ctx, admin.ReportQuery{Active: &no}); err != nil || len(rs) != 1 || rs[0].Seq != 7 {
		t.Fatalf("inactive: %+v, %v", rs, err)
	}
	if rs, err := viewer.Reports(ctx, admin.ReportQuery{Limit: 1}); err != nil || len(rs) != 1 || rs[0].Seq != 3 {
		t.Fatalf("limit 1: %+v, %v", rs, err)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "active=maybe"} {
		if status, body := rawRequest(t, env.Socket, "GET", "/v1/reports?"+q, vt.Secret, ""); status != 400 {
			t.Errorf("%s: %d %s, want 400", q, status, body)
		}
	}
	if status, _ := rawRequest(t, env.Socket, "GET", "/v1/reports", "", ""); status != 401 {
		t.Errorf("no token: %d, want 401", status)
	}

	// An indicator known only from reports has a detail view that lists
	// them; another indicator's detail lists none.
	d, err := viewer.IOC(ctx, "198.51.100.23", "")
	if err != nil || len(d.ReportList) != 2 || d.ReportList[0].Seq != 3 || d.Sightings != 0 {
		t.Fatalf("ioc detail: %+v, %v", d, err)
	}
	_, err = viewer.IOC(ctx, "198.51.100.24", "")
	wantAPIError(t, err, 404, "not_found")
}
