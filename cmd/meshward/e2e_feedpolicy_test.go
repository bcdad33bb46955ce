package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// One agent process, driven by the CLI: the operator's feed policy takes
// the reports this node publishes ("operator:local-admin"); a report
// meeting it becomes a mesh-wide block, a public resolver and an entry
// under the operators' warninglist never do, and warninglist check names
// the entry that vetoes a value.
func TestAgentFeedPolicyCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs an agent")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opKey, opPub := operatorKeygen(t, bin, dir)
	d := filepath.Join(dir, "a")
	writeConfig(t, d, "site-a", founderConsensus(opPub)+"gossip:\n  indicators: true\n")
	startAgent(t, bin, d)
	sock := filepath.Join(d, "admin.sock")
	poll(t, ctx, "the node to lead a mesh of one", func() bool {
		var st struct {
			Mesh struct{ Leader string } `json:"mesh"`
		}
		out, err := cli(bin, "status", "--node", sock, "-o", "json", "--timeout", "2s")
		return err == nil && json.Unmarshal(out, &st) == nil && st.Mesh.Leader != ""
	})
	run := func(args ...string) string {
		t.Helper()
		out, err := cli(bin, append(args, "--node", sock)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("intel", "feed-policy", "set", "ops", "--source", "operator:local-admin", "--min-confidence", "80",
		"--types", "ipv4", "--ttl", "1h", "--operator-key", opKey)
	if out := run("intel", "feed-policy", "list"); !strings.Contains(out, "operator:local-admin") || !strings.Contains(out, "voters") {
		t.Fatalf("feed-policy list:\n%s", out)
	}
	run("intel", "warninglist", "add", "198.51.100.0/24", "--reason", "partner", "--operator-key", opKey)
	if out := run("intel", "warninglist", "check", "198.51.100.7"); out != "198.51.100.7 is warninglisted by 198.51.100.0/24 (list operator: partner)\n" {
		t.Fatalf("warninglist check: %q", out)
	}
	run("iocs", "publish", "8.8.8.8", "--confidence", "100")
	run("iocs", "publish", "198.51.100.7", "--confidence", "100")
	run("iocs", "publish", "203.0.113.9", "--confidence", "40")
	run("iocs", "publish", "203.0.113.77", "--confidence", "90")
	var blocked []string
	poll(t, ctx, "the feed block of 203.0.113.77", func() bool {
		out, err := cli(bin, "policy", "list", "-o", "json", "--node", sock, "--timeout", "2s")
		var ps []struct {
			Scope     string `json:"scope"`
			Author    string `json:"author"`
			Indicator struct{ Value string }
		}
		if err != nil || json.Unmarshal(out, &ps) != nil {
			return false
		}
		blocked = blocked[:0]
		for _, p := range ps {
			if p.Scope == "mesh" {
				blocked = append(blocked, p.Indicator.Value+" "+p.Author)
			}
		}
		return len(blocked) > 0
	})
	if len(blocked) != 1 || blocked[0] != "203.0.113.77 feed:ops" {
		t.Fatalf("mesh-wide blocks %v, want only 203.0.113.77 by feed:ops", blocked)
	}
}
