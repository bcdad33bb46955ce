package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/testnet"
)

// On a real three-node mesh, one node detects a brute force; the report
// merging the three nodes' exports measures sharing and enforcing to the
// last node, and each equals the difference of the recorded events; one
// node's export alone measures them to that node.
func TestProcessEveryNodeOnAMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node mesh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := testnet.Start(ctx, testnet.Options{Nodes: 3, MinNodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	attacker := netip.MustParseAddr("203.0.113.66")
	ind := intel.IndicatorFromAddr(attacker)
	if err := m.InjectSSHBruteForce(0, attacker, 8); err != nil {
		t.Fatal(err)
	}
	tls := make([]node.Timeline, len(m.Nodes))
	if err := testnet.Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			tl, _ := n.Timeline(ind)
			if tl.Received.IsZero() || tl.MeshEnforced().IsZero() {
				return false, fmt.Sprintf("node %d has not received and enforced it: %+v", i, tl)
			}
			tls[i] = tl
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}
	var exports []process.Export
	for _, n := range m.Nodes {
		ex, err := n.ProcessExport(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exports = append(exports, ex)
	}
	// The detection: the earliest any node recorded (the detecting node's
	// clock, or the seal of its sighting).
	var detected time.Time
	for _, ex := range exports {
		for _, r := range ex.Records {
			if r.Indicator == ind.Key() && (detected.IsZero() || r.Detected.Before(detected)) {
				detected = r.Detected
			}
		}
	}
	var lastRecv, firstCommit, lastEnf time.Time
	for _, tl := range tls {
		lastRecv = maxTime(lastRecv, tl.Received)
		lastEnf = maxTime(lastEnf, tl.MeshEnforced())
		if firstCommit.IsZero() || tl.Committed.Before(firstCommit) {
			firstCommit = tl.Committed
		}
	}
	until := exports[0].Generated.Add(time.Second)
	check := func(what string, rep process.Report, want map[process.Stage]time.Duration) {
		t.Helper()
		got := map[process.Stage]process.StageStats{}
		for _, s := range rep.Summary.Stages {
			got[s.Stage] = s
		}
		for st, d := range want {
			if s := got[st]; s.Count != 1 || s.P50 != max(d, 0).Seconds() {
				t.Errorf("%s: %s %+v, want one incident of %v", what, st, s, d)
			}
		}
	}
	all := process.BuildReport(exports, until.Add(-time.Hour), until)
	if all.Expected != 3 || len(all.Nodes) != 3 {
		t.Fatalf("merged %v nodes, expected %d", all.Nodes, all.Expected)
	}
	check("every node", all, map[process.Stage]time.Duration{
		process.StageShare:   lastRecv.Sub(detected),
		process.StageDecide:  firstCommit.Sub(detected),
		process.StageEnforce: lastEnf.Sub(detected),
	})
	t.Logf("every node: share %v, decide %v, enforce %v", lastRecv.Sub(detected), firstCommit.Sub(detected), lastEnf.Sub(detected))
	one := process.BuildReport(exports[2:], until.Add(-time.Hour), until)
	check("node 2 alone", one, map[process.Stage]time.Duration{
		process.StageShare:   tls[2].Received.Sub(detected),
		process.StageEnforce: tls[2].MeshEnforced().Sub(detected),
	})

	// The records are on disk: node 2 restarted (its timelines, in
	// memory, gone) still exports what it recorded.
	var before process.Record
	for _, r := range exports[2].Records {
		if r.Indicator == ind.Key() {
			before = r
		}
	}
	if err := m.Kill(2); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
	ex, err := m.Nodes[2].ProcessExport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var after process.Record
	for _, r := range ex.Records {
		if r.Indicator == ind.Key() {
			after = r
		}
	}
	if !after.Received.Equal(before.Received) || !after.Enforced.Equal(before.Enforced) || after.Received.IsZero() {
		t.Errorf("after a restart node 2 records %+v, before %+v", after, before)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
