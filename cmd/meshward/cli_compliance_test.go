package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/responders"
)

func TestCLICompliance(t *testing.T) {
	env := cliEnvWith(t, admin.Options{Version: "test", Now: func() time.Time { return fixed }})
	out, errOut, err := runCLI(t, env, "compliance")
	if err != nil {
		t.Fatalf("compliance: %v (stderr %q)", err, errOut)
	}
	golden(t, "compliance", out)

	out, _, err = runCLI(t, env, "compliance", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r admin.ComplianceReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if r.Compliant || len(r.Reasons) != 1 || r.LastDrift == nil || r.LastDrift.Out != 1500*time.Millisecond {
		t.Errorf("json report %+v", r)
	}
	// The fake runs no mesh-wide queries: --mesh says so.
	if _, _, err := runCLI(t, env, "compliance", "--mesh"); err == nil || !strings.Contains(err.Error(), "mesh-wide") {
		t.Errorf("--mesh on a node without queries: %v", err)
	}
}

func TestPrintMeshCompliance(t *testing.T) {
	out, _ := json.Marshal(admin.ComplianceReport{Node: cliPeerID, Site: "branch", ComplianceStatus: responders.ComplianceStatus{
		OutSince: fixed, Reasons: []string{"blocks: 3 blocks missing from nftables", "segmentation: set seg-q4 missing"}},
		Segmentation: admin.SegmentationStatus{Enforced: true, Flows: 4}})
	ok, _ := json.Marshal(admin.ComplianceReport{Node: cliNodeID, Site: "hq", ComplianceStatus: responders.ComplianceStatus{Compliant: true},
		Segmentation: admin.SegmentationStatus{Flows: 4}})
	v := admin.QueryView{Kind: "compliance", Timeout: "5s", Summary: map[string]int{"answered": 2, "timed_out": 1}, Results: []admin.QueryResultView{
		{Node: cliNodeID, Site: "hq", Status: "answered", Answer: ok},
		{Node: cliPeerID, Site: "branch", Status: "answered", Answer: out},
		{Node: "12D3KooWCliTestGoneCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", Site: "gone", Status: "timed_out", Error: "no answer within 5s"},
	}}
	var b bytes.Buffer
	tw := newTable(&b)
	printMeshCompliance(tw, v)
	tw.Flush()
	golden(t, "compliance-mesh", b.String())
}
