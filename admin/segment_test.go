package admin_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
)

// Zones, flows and quarantines committed through operator commands are
// listed to a viewer; a quarantine needs a responder's token and key, a
// zone an admin's; a shadowed flow is reported.
func TestSegmentationRoutes(t *testing.T) {
	e := newOperatorEnv(t)
	ctx := context.Background()
	office := intel.Zone{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	_, err := e.responder.SubmitOperator(ctx, e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpSetZone, Zone: &office}))
	wantAPIError(t, err, 403, "forbidden")
	if _, err := e.admin_.SubmitOperator(ctx, e.sign(t, e.alice, intel.OperatorCommand{Op: intel.OpSetZone, Zone: &office})); err != nil {
		t.Fatalf("set zone: %v", err)
	}
	deny := intel.Flow{Name: "no-smb", From: intel.AnyZone, To: "office", Proto: intel.ProtoTCP, Ports: []intel.PortRange{{From: 445, To: 445}}, Action: intel.FlowDeny, Priority: 20}
	narrow := deny
	narrow.Name, narrow.From, narrow.Priority = "no-smb-office", "office", 10
	var warnings [][]string
	for _, f := range []intel.Flow{deny, narrow} {
		res, err := e.admin_.SubmitOperator(ctx, e.sign(t, e.alice, intel.OperatorCommand{Op: intel.OpSetFlow, Flow: &f}))
		if err != nil {
			t.Fatalf("set flow %s: %v", f.Name, err)
		}
		warnings = append(warnings, res.Warnings)
	}
	// The command result says that the second flow is shadowed.
	if len(warnings[0]) != 0 || len(warnings[1]) != 1 || !strings.Contains(warnings[1][0], "flow no-smb-office is shadowed by flow no-smb") {
		t.Fatalf("set_flow warnings %q", warnings)
	}
	host := netip.MustParseAddr("10.1.0.66")
	res, err := e.responder.SubmitOperator(ctx, e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpQuarantine, Host: host, TTLSeconds: 3600, Reason: "lateral"}))
	if err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	if res.Target != "host:10.1.0.66" {
		t.Fatalf("quarantine target %q", res.Target)
	}

	zones, err := e.viewer.Zones(ctx)
	if err != nil || len(zones) != 1 || zones[0].Name != "office" {
		t.Fatalf("zones %+v, %v", zones, err)
	}
	flows, err := e.viewer.Flows(ctx)
	if err != nil || len(flows.Flows) != 2 || flows.Flows[0].Name != "no-smb" {
		t.Fatalf("flows %+v, %v", flows, err)
	}
	if len(flows.Warnings) != 1 || flows.Warnings[0] != (intel.FlowWarning{Flow: "no-smb-office", ShadowedBy: "no-smb"}) {
		t.Fatalf("flow warnings %+v", flows.Warnings)
	}
	qs, err := e.viewer.Quarantines(ctx)
	if err != nil || len(qs) != 1 || qs[0].Host != host || qs[0].Zone != "office" || qs[0].ExpiresAt.Sub(qs[0].Since).Hours() != 1 {
		t.Fatalf("quarantines %+v, %v", qs, err)
	}
	if _, err := e.responder.SubmitOperator(ctx, e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpRelease, Host: host})); err != nil {
		t.Fatalf("release: %v", err)
	}
	if qs, err := e.viewer.Quarantines(ctx); err != nil || len(qs) != 0 {
		t.Fatalf("after release: %+v, %v", qs, err)
	}
	_, err = e.responder.SubmitOperator(ctx, e.sign(t, e.bob, intel.OperatorCommand{Op: intel.OpRelease, Host: host}))
	wantAPIError(t, err, 404, "not_found")
}
