package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// One agent process, driven by the CLI: zones, flows and a quarantine
// signed with the operator key are committed and listed; a default-deny
// zone over loopback, a quarantine of loopback and the removal of a zone
// a flow names are refused by the node's FSM, each answer naming why; a
// flow that an earlier one shadows is committed with a warning.
func TestAgentSegmentationCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs an agent")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opKey, opPub := operatorKeygen(t, bin, dir)
	d := filepath.Join(dir, "a")
	writeConfig(t, d, "site-a", founderConsensus(opPub))
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
	refused := func(want string, args ...string) {
		t.Helper()
		out, err := cli(bin, append(args, "--node", sock)...)
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("%v: %v\n%s\nwant a refusal naming %q", args, err, out, want)
		}
	}
	signed := func(args ...string) []string { return append(args, "--operator-key", opKey) }

	run(signed("zone", "add", "office", "--cidr", "10.1.0.0/16", "--auto-quarantine", "ssh-internal-bruteforce")...)
	run(signed("zone", "add", "mgmt", "--cidr", "10.9.0.0/24", "--management")...)
	refused("127.0.0.0/8", signed("zone", "add", "lo", "--cidr", "127.0.0.0/8", "--default-deny")...)
	run(signed("flow", "add", "no-smb", "--from", "*", "--to", "office", "--proto", "tcp", "--ports", "445", "--action", "deny", "--priority", "20")...)
	if out := run(signed("flow", "add", "no-smb-lab", "--from", "mgmt", "--to", "office", "--proto", "tcp", "--ports", "445", "--action", "deny")...); !strings.Contains(out, "warning: flow no-smb-lab is shadowed by flow no-smb") {
		t.Fatalf("flow add of a shadowed flow:\n%s", out)
	}
	refused("contradicts", signed("flow", "add", "smb-ok", "--from", "*", "--to", "office", "--proto", "tcp", "--ports", "445", "--action", "allow", "--priority", "20")...)
	run(signed("quarantine", "10.1.0.66", "--ttl", "2h", "--reason", "lateral movement")...)
	refused("loopback", signed("quarantine", "127.0.0.1", "--ttl", "1h")...)
	refused("zone_in_use", signed("zone", "remove", "office")...)

	if out := run("flow", "list"); !strings.Contains(out, "no-smb") || !strings.Contains(out, "shadowed by no-smb") {
		t.Fatalf("flow list:\n%s", out)
	}
	var qs []struct {
		Host, Zone, By string
		Since          time.Time
		ExpiresAt      time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(run("quarantine", "list", "-o", "json")), &qs); err != nil || len(qs) != 1 ||
		qs[0].Host != "10.1.0.66" || qs[0].Zone != "office" || qs[0].ExpiresAt.Sub(qs[0].Since) != 2*time.Hour {
		t.Fatalf("quarantine list: %+v, %v", qs, err)
	}
	run(signed("quarantine", "release", "10.1.0.66")...)
	if out := run("quarantine", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("quarantine list after the release: %s", out)
	}
	if out := run("zone", "list"); !strings.Contains(out, "ssh-internal-bruteforce (1 node(s), 1h0m0s)") {
		t.Fatalf("zone list:\n%s", out)
	}
}
