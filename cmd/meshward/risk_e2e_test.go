package main

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/risk"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/testnet"
)

// TestRiskSameOnEveryNode runs a real three-node mesh with the ATT&CK
// catalog: an automatic block proven by nodes 0 and 1 is overturned by an
// operator (both lose trust on every node), then nodes 0 and 2 see
// another attacker. Every node's admin API gives that indicator the same
// score and the same factors (corroboration weighted by node 0's lower
// trust, the technique's tactic from the catalog, the CVE of a report),
// lists it by risk, shows the trust of each member, and `meshward iocs
// show` explains it.
func TestRiskSameOnEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	attackDir := testenv.SharedData(t, "attack")
	t.Setenv(envToken, "")
	t.Setenv(envNode, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	socks := make([]string, 3)
	m, err := testnet.Start(ctx, testnet.Options{Nodes: 3, Dir: t.TempDir(), Configure: func(i int, cfg *node.Config) {
		cfg.Intel.AttackPath = attackDir
		socks[i] = cfg.SocketPath()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	clients := make([]*admin.Client, 3)
	for i, s := range socks {
		tok, err := admin.ReadTokenFile(admin.DefaultTokenFile(s))
		if err != nil {
			t.Fatal(err)
		}
		if clients[i], err = admin.NewClient(s, tok, admin.ClientOptions{}); err != nil {
			t.Fatal(err)
		}
		defer clients[i].Close()
	}
	poll := func(what string, cond func() (bool, string)) {
		t.Helper()
		if err := testnet.Poll(ctx, 20*time.Millisecond, cond); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	blocked := func(ind intel.Indicator) func() (bool, string) {
		return func() (bool, string) {
			for _, n := range m.Nodes {
				if _, ok := n.Consensus().Policy(intel.PolicyID(intel.ActionBlock, ind), time.Now()); !ok {
					return false, "node " + n.Site() + " holds no block of " + ind.Value
				}
			}
			return true, ""
		}
	}
	id := func(i int) string { return m.Nodes[i].ID() }

	// A block proven by nodes 0 and 1, revoked by the operator: both lose
	// TrustPenalty on every node.
	first := netip.MustParseAddr("203.0.113.50")
	firstInd := intel.IndicatorFromAddr(first)
	for _, i := range []int{0, 1} {
		if err := m.InjectSSHBruteForce(i, first, 12); err != nil {
			t.Fatal(err)
		}
	}
	poll("the first block", blocked(firstInd))
	if err := m.Operator().Submit(ctx, 2, intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: intel.PolicyID(intel.ActionBlock, firstInd)}); err != nil {
		t.Fatal(err)
	}
	lowered := consensus.TrustMax - consensus.TrustPenalty
	poll("nodes 0 and 1 to lose trust everywhere", func() (bool, string) {
		for _, n := range m.Nodes {
			for _, i := range []int{0, 1} {
				if got := n.Consensus().SiteTrust(id(i)); got != lowered {
					return false, fmt.Sprintf("node %s: trust of node %d is %d", n.Site(), i, got)
				}
			}
		}
		return true, ""
	})

	// Nodes 0 and 2 see another attacker; node 1 reports it with a CVE.
	second := netip.MustParseAddr("203.0.113.60")
	ind := intel.IndicatorFromAddr(second)
	for _, i := range []int{0, 2} {
		if err := m.InjectSSHBruteForce(i, second, 12); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Nodes[1].PublishReport(ctx, intel.IndicatorReport{Indicator: ind, Source: "operator:test", Confidence: 60,
		Labels: []string{"CVE-2024-3400"}, ValidFrom: time.Now().UTC().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	poll("the second block", blocked(ind))
	at := time.Now().UTC().Truncate(time.Second)
	var scores []risk.Result
	// The sightings and the report travel by gossip and the FSM states
	// converge: wait until every node holds the same, then compare.
	poll("every node to score the indicator alike", func() (bool, string) {
		scores = scores[:0]
		for i, c := range clients {
			d, err := c.IOCAt(ctx, ind.Value, "", at)
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", i, err)
			}
			if d.Risk == nil || d.Origins != 2 || len(d.ReportList) != 1 {
				return false, fmt.Sprintf("node %d: %d origins, %d reports, risk %v", i, d.Origins, len(d.ReportList), d.Risk)
			}
			scores = append(scores, *d.Risk)
		}
		for i := 1; i < len(scores); i++ {
			if !reflect.DeepEqual(scores[i], scores[0]) {
				return false, fmt.Sprintf("node %d scores %+v, node 0 %+v", i, scores[i], scores[0])
			}
		}
		return true, ""
	})
	r := scores[0]
	t.Logf("risk of %s on every node: %d, factors %+v", ind.Value, r.Score, r.Factors)
	for name, want := range map[string]string{
		risk.FactorCorroboration: "2 sites, trust sum 1.800", // node 0 at 800, node 2 at 1000
		risk.FactorSeverity:      "highest: high",
		risk.FactorTactic:        "(credential-access)",
		risk.FactorCVE:           "CVE-2024-3400 (CVSS 5.0)",
		risk.FactorReports:       "1 source",
		risk.FactorRecidivism:    "1 block before",
	} {
		if f, ok := r.Factor(name); !ok || !strings.Contains(f.Detail, want) {
			t.Errorf("factor %s: %+v, want its detail to say %q", name, f, want)
		}
	}
	if r.Score <= 0 || r.Score > 100 || !r.At.Equal(at) {
		t.Fatalf("score %d at %s", r.Score, r.At)
	}

	// The list by risk gives it the same score on every node, highest
	// first.
	for i, c := range clients {
		list, err := c.IOCs(ctx, admin.IOCQuery{Sort: "risk", At: at})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for j, ioc := range list {
			if ioc.Risk == nil || (j > 0 && *ioc.Risk > *list[j-1].Risk) {
				t.Fatalf("node %d: list not ordered by risk: %+v", i, list)
			}
			if ioc.Indicator == ind {
				found = *ioc.Risk == r.Score
			}
		}
		if !found {
			t.Errorf("node %d: %s not listed with risk %d: %+v", i, ind.Value, r.Score, list)
		}
	}
	// A bad sort is refused, naming the parameter.
	if _, err := clients[0].IOCs(ctx, admin.IOCQuery{Sort: "loudest"}); err == nil || !strings.Contains(err.Error(), "sort") {
		t.Errorf("sort=loudest: %v, want a refusal naming sort", err)
	}

	// Members show their trust.
	ms, err := clients[2].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range ms {
		want := consensus.TrustMax
		if mb.ID == id(0) || mb.ID == id(1) {
			want = lowered
		}
		if mb.Trust == nil || *mb.Trust != want {
			t.Errorf("member %s: trust %v, want %d", mb.Site, mb.Trust, want)
		}
	}

	// The CLI explains the score, the same through every node.
	var outs []string
	for i := range socks {
		out, errOut, err := runCLIWith(t, nil, testDeps(), "iocs", "show", ind.Value, "--at", at.Format(time.RFC3339), "--node", socks[i])
		if err != nil {
			t.Fatalf("iocs show through node %d: %v (%s)", i, err, errOut)
		}
		start := strings.Index(out, "Risk:")
		if start < 0 {
			t.Fatalf("iocs show through node %d says nothing of risk:\n%s", i, out)
		}
		outs = append(outs, out[start:start+strings.Index(out[start:], "\n\n")])
	}
	for i := range outs {
		if outs[i] != outs[0] {
			t.Errorf("node %d explains:\n%s\nnode 0:\n%s", i, outs[i], outs[0])
		}
	}
	for _, want := range []string{fmt.Sprintf("%d/100", r.Score), "FACTOR", "corroboration", "2 sites, trust sum 1.800", "credential-access", "recency"} {
		if !strings.Contains(outs[0], want) {
			t.Errorf("iocs show does not say %q:\n%s", want, outs[0])
		}
	}
	t.Logf("meshward iocs show %s:\n%s", ind.Value, outs[0])
	out, _, err := runCLIWith(t, nil, testDeps(), "iocs", "list", "--sort", "risk", "--at", at.Format(time.RFC3339), "--node", socks[1])
	if err != nil || !strings.HasPrefix(out, "RISK") || !strings.Contains(out, ind.Value) {
		t.Errorf("iocs list --sort risk: %v\n%s", err, out)
	}
	out, _, err = runCLIWith(t, nil, testDeps(), "members", "list", "--node", socks[1])
	if err != nil || !strings.Contains(out, "TRUST") || !strings.Contains(out, fmt.Sprint(lowered)) {
		t.Errorf("members list: %v\n%s", err, out)
	}

	// The technique from the catalog, and what the mesh saw under it:
	// both attackers' sightings carry T1110.001, a sub-technique.
	v, err := clients[0].Attack(ctx, "t1110", 3)
	if err != nil {
		t.Fatal(err)
	}
	if v.Technique.ID != "T1110" || v.Technique.Name != "Brute Force" || !slices.ContainsFunc(v.Technique.Tactics, func(a admin.AttackTactic) bool { return a.ShortName == "credential-access" }) ||
		!slices.Contains(v.Technique.Subtechniques, "T1110.001") {
		t.Errorf("technique %+v", v.Technique)
	}
	if v.ByTechnique["T1110.001"] == 0 || v.Indicators != 2 || v.Origins != 3 || len(v.Sightings) != 3 || v.Matched < len(v.Sightings) {
		t.Errorf("seen under T1110: matched %d %v, %d indicators, %d origins, %d listed", v.Matched, v.ByTechnique, v.Indicators, v.Origins, len(v.Sightings))
	}
	// The block names the technique its evidence was detected under.
	pv, err := clients[2].Policy(ctx, intel.PolicyID(intel.ActionBlock, ind), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.Techniques) == 0 || pv.Techniques[0].AttackRef == nil || !strings.HasPrefix(pv.Techniques[0].ID, "T1110") ||
		!slices.Contains(pv.Techniques[0].Tactics, "TA0006 Credential Access") {
		t.Errorf("policy techniques %+v, want the brute force its evidence was detected under, named", pv.Techniques)
	}
	page, err := clients[0].PolicyPage(ctx, admin.PolicyQuery{Limit: 10})
	if err != nil || len(page.Items) == 0 || len(page.Items[0].Techniques) == 0 {
		t.Errorf("policy list: %+v, %v; want techniques on each", page.Items, err)
	}
	// Sightings name their technique and its tactics from the catalog.
	for _, sg := range v.Sightings {
		if a := sg.Attack; a == nil || a.Name == "" || !slices.Contains(a.Tactics, "TA0006 Credential Access") ||
			(strings.Contains(sg.Sighting.Technique, ".") && a.Parent != "T1110") {
			t.Errorf("sighting under %s: attack %+v, want the technique's name and TA0006 Credential Access", sg.Sighting.Technique, a)
		}
	}
	listed, err := clients[1].Sightings(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range listed {
		if sg.Sighting.Technique != "" && (sg.Attack == nil || sg.Attack.Name == "") {
			t.Errorf("listed sighting under %s has no technique name: %+v", sg.Sighting.Technique, sg.Attack)
		}
	}
	if _, err := clients[0].Attack(ctx, "T99", 0); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a malformed technique: %v, want 400", err)
	}
	if _, err := clients[0].Attack(ctx, "T1999", 0); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a technique the catalog lacks: %v, want 404", err)
	}
	out, err = runIntel(t, "", "intel", "attack", "T1110", "--node", socks[2])
	if err != nil || !strings.Contains(out, "T1110 Brute Force") || !strings.Contains(out, "credential-access") || !strings.Contains(out, "T1110.001:") {
		t.Errorf("intel attack T1110: %v\n%s", err, out)
	}
	t.Logf("meshward intel attack T1110:\n%s", out)
}
