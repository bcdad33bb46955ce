package testnet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scenarioTestSize is the size every shipped scenario runs at in the
// tests (RunOptions.Size).
const scenarioTestSize = 5

// TestShippedScenarios runs every file of scenarios/ on a 5-node mesh
// and asserts that each of its expectations was met.
func TestShippedScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 5-node mesh per scenario")
	}
	files, err := filepath.Glob(filepath.Join("scenarios", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			t.Parallel()
			s, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			start := time.Now()
			var narration bytes.Buffer
			rep, err := RunScenario(ctx, s, RunOptions{Size: scenarioTestSize, Dir: t.TempDir(), Logger: testLogger(t), Narrate: &narration})
			t.Logf("%s ran in %s:\n%s", f, time.Since(start).Round(time.Millisecond), narration.String())
			if rep == nil {
				t.Fatalf("no report: %v", err)
			}
			var text bytes.Buffer
			_ = rep.WriteText(&text)
			if err != nil || !rep.Passed {
				t.Fatalf("scenario failed: %v\n%s", err, text.String())
			}
			if len(rep.Expectations) == 0 {
				t.Fatal("the scenario checked nothing")
			}
			for _, e := range rep.Expectations {
				if !e.Passed {
					t.Errorf("expectation %q (line %d) failed: %s", e.Name, e.Line, e.Reason)
				}
			}
			if len(rep.Steps) != len(s.Timeline) {
				t.Errorf("%d of %d steps ran", len(rep.Steps), len(s.Timeline))
			}
		})
	}
}

// TestScenarioFailsWithReason: an expectation that cannot hold fails the
// run, with its line and a reason naming what was missing; a
// never_blocked expectation on an address the mesh does block fails too.
func TestScenarioFailsWithReason(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	s, err := ParseScenario("fails.yaml", []byte(`name: fails
topology: {nodes: 3}
timeline:
  - attack: {kind: brute_force, from: 203.0.113.5, nodes: [0, 1]}
  - expect:
      enforced: {indicator: 203.0.113.5, on: all}
  - expect:
      never_blocked: [203.0.113.5]
      within: 2s
  - expect:
      enforced: {indicator: 203.0.113.6, on: [2]}
      within: 1s
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunScenario(ctx, s, RunOptions{Dir: t.TempDir(), Logger: testLogger(t)})
	if err == nil || rep == nil || rep.Passed {
		t.Fatalf("the run passed: err=%v", err)
	}
	want := map[string]string{
		"enforced 203.0.113.5 on all":           "",
		"never blocked 203.0.113.5":             "holds a mesh-wide block of 203.0.113.5",
		"enforced 203.0.113.6 on [2]":           "node 2 does not hold a committed block of 203.0.113.6",
		"at the end: never blocked 203.0.113.5": "holds a mesh-wide block of 203.0.113.5",
	}
	if len(rep.Expectations) != len(want) {
		t.Fatalf("%d verdicts, want %d: %+v", len(rep.Expectations), len(want), rep.Expectations)
	}
	for _, e := range rep.Expectations {
		reason, ok := want[e.Name]
		switch {
		case !ok:
			t.Errorf("unexpected verdict %+v", e)
		case reason == "" && !e.Passed:
			t.Errorf("%s failed: %s", e.Name, e.Reason)
		case reason != "" && (e.Passed || !strings.Contains(e.Reason, reason)):
			t.Errorf("%s: passed=%v reason %q, want a failure saying %q", e.Name, e.Passed, e.Reason, reason)
		}
	}
	if !strings.Contains(rep.Failure, "line 10: enforced 203.0.113.6") {
		t.Errorf("the failure does not name the line of the failed step: %s", rep.Failure)
	}
}

func TestParseScenarioErrors(t *testing.T) {
	base := "name: x\ntopology: {nodes: 3, groups: {a: [0], b: rest}}\ntimeline:\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field":       {base + "  - attack: {kind: brute_force, from: 192.0.2.1, nodes: all, colour: red}\n", "line 4: field colour not found"},
		"unknown top field":   {"name: x\nnodes: 3\n", "line 2: field nodes not found"},
		"bad duration":        {base + "  - expect: {enforced: {indicator: 192.0.2.1, on: all}, within: soon}\n", `line 4: "soon" is not a duration`},
		"bad address":         {base + "  - attack: {kind: brute_force, from: 999.1.1.1, nodes: all}\n", `line 4: "999.1.1.1" is not an IP address`},
		"bad indicator":       {base + "  - expect: {never_blocked: ['not an indicator!']}\n", "line 4: \"not an indicator!\" is not an indicator"},
		"bad kind":            {base + "  - attack: {kind: ddos, from: 192.0.2.1, nodes: all}\n", `timeline[0] (line 4): attack.kind: "ddos"`},
		"two actions":         {base + "  - heal: true\n    kill: 1\n", "timeline[0] (line 4): a step has exactly one"},
		"no action":           {base + "  - name: nothing\n", "timeline[0] (line 4): a step has exactly one"},
		"unknown group":       {base + "  - kill: east\n", `line 4: kill: "east" is neither a group`},
		"partition group":     {base + "  - partition: [a, c]\n", `partition: no group "c"`},
		"negative index":      {base + "  - heal: true\n  - kill: -1\n", "timeline[1] (line 5): line 5: kill: negative node index -1"},
		"empty expect":        {base + "  - expect: {within: 3s}\n", "expect: name at least one of"},
		"refused not counter": {base + "  - expect: {refused: {metric: up, min: 1}}\n", `expect.refused.metric: "up" is not a meshward_ counter`},
		"stranger protocol":   {base + "  - stranger: {node: 0, protocols: [ssh]}\n", `stranger.protocols: "ssh": allowed values are query, raft, raft-rpc, sync`},
		"no nodes":            {"name: x\ntopology: {nodes: 0}\ntimeline:\n  - heal: true\n", "topology.nodes: must be at least 1"},
		"no timeline":         {"name: x\ntopology: {nodes: 2}\n", "timeline: at least one step"},
		"bad profile":         {"name: x\ntopology: {nodes: 2, profile: huge}\ntimeline:\n  - heal: true\n", `topology.profile: testnet: profile "huge"`},
		"two documents":       {"name: x\ntopology: {nodes: 2}\ntimeline:\n  - heal: true\n---\nname: y\n", "more than one YAML document"},
		"reserved group":      {"name: x\ntopology: {nodes: 2, groups: {all: [0]}}\ntimeline:\n  - heal: true\n", `line 2: topology.groups: "all" is a reserved name`},
		"rogue both":          {base + "  - rogue: {node: 1, forge: 192.0.2.1, flood: 10}\n", "rogue: exactly one of forge and flood"},
		"bad group":           {"name: x\ntopology: {nodes: 2, groups: {a: everything}}\ntimeline:\n  - heal: true\n", `line 2: a group is a list of node indices or "rest"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseScenario("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "scenario bad.yaml") {
				t.Fatalf("error %q\nwant it to name the file and contain %q", err, tc.want)
			}
		})
	}
}

// Run-time checks: groups and indices beyond the mesh's size, links.
func TestRunScenarioRefusesBeforeStarting(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"group past size": {"name: x\ntopology: {nodes: 3, groups: {a: [0, 5]}}\ntimeline:\n  - heal: true\n", "line 2: topology.groups.a: node 5, but the mesh has 3 nodes"},
		"empty rest":      {"name: x\ntopology: {nodes: 2, groups: {a: [0, 1], b: rest}}\ntimeline:\n  - heal: true\n", `topology.groups.b: "rest" is empty at 2 nodes`},
		"links":           {"name: x\ntopology:\n  nodes: 2\n  groups: {a: [0], b: [1]}\n  links: [{between: [a, b], latency: 50ms}]\ntimeline:\n  - heal: true\n", "latency and loss between groups need network namespaces"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := ParseScenario("bad.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := RunScenario(context.Background(), s, RunOptions{})
			if err == nil || rep != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, report %v; want %q", err, rep, tc.want)
			}
		})
	}
}

// Every shipped scenario parses, and names at least one expectation.
func TestShippedScenariosParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("scenarios", "*.yaml"))
	if len(files) < 5 {
		t.Fatalf("%d scenario files, want at least 5", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseScenario(f, b)
		if err != nil {
			t.Fatal(err)
		}
		expects := 0
		for _, st := range s.Timeline {
			if st.Expect != nil {
				expects++
			}
		}
		if expects == 0 {
			t.Errorf("%s expects nothing", f)
		}
		if s.Topology.Nodes < scenarioTestSize && len(s.Topology.Groups) > 0 {
			t.Errorf("%s has fewer nodes than the tests run it at", f)
		}
	}
}

// The sim profile (stores opened by the mesh without synced writes,
// fewer dial peers, longer heartbeats, one cache of verified envelopes
// for all nodes) runs a scenario that kills and restarts a node from its
// data directory, and one whose rogue member forges sightings of another
// member: what one node verified is shared, a forgery is refused by all.
func TestScenariosSimProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 5-node meshes")
	}
	t.Parallel()
	for _, f := range []string{"leader-kill.yaml", "rogue-member.yaml"} {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			s, err := LoadScenario(filepath.Join("scenarios", f))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep, err := RunScenario(ctx, s, RunOptions{Size: scenarioTestSize, Profile: ProfileSim, Dir: t.TempDir(), Logger: testLogger(t)})
			if rep == nil {
				t.Fatalf("no report: %v", err)
			}
			if err != nil || !rep.Passed || rep.Profile != ProfileSim {
				var text bytes.Buffer
				_ = rep.WriteText(&text)
				t.Fatalf("profile %s: %v\n%s", rep.Profile, err, text.String())
			}
		})
	}
}

// TestDefaultScenarioTimeoutGrowsWithTheMesh: a scenario file without a
// timeout gets three minutes up to SimProfileAbove nodes, and a second
// more for each node above (a 1,000-node file ran out at three minutes
// while its mesh formed).
func TestDefaultScenarioTimeoutGrowsWithTheMesh(t *testing.T) {
	for _, c := range []struct {
		nodes int
		want  time.Duration
	}{
		{5, 3 * time.Minute},
		{SimProfileAbove, 3 * time.Minute},
		{SimProfileAbove + 1, 3*time.Minute + time.Second},
		{1000, 3*time.Minute + 950*time.Second},
	} {
		if got := DefaultScenarioTimeout(c.nodes); got != c.want {
			t.Errorf("DefaultScenarioTimeout(%d) = %s, want %s", c.nodes, got, c.want)
		}
	}
}
