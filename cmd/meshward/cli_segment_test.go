package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
)

// runSegmentCLI runs `meshward ARGS --node SOCKET` with the zone, flow and
// quarantine nouns made with deps.
func runSegmentCLI(t *testing.T, env *admintest.Env, deps cliDeps, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newZoneCmd(deps), newFlowCmd(deps), newQuarantineCmd(deps))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--node", env.Socket))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCLISegmentSignsCommands(t *testing.T) {
	env, deps := operatorEnv(t)
	must := func(args ...string) string {
		t.Helper()
		out, err := runSegmentCLI(t, env, deps, args...)
		if err != nil {
			t.Fatalf("%v: %v (%s)", args, err, out)
		}
		return out
	}
	must("zone", "add", "office", "--cidr", "10.1.0.0/16", "--site", "branch-1", "--auto-quarantine", "ssh-internal-bruteforce", "--auto-quarantine-ttl", "2h")
	must("zone", "add", "servers", "--cidr", "10.2.0.0/16", "--cidr", "2001:db8:2::/48", "--default-deny")
	must("flow", "add", "no-smb", "--from", "*", "--to", "office", "--proto", "tcp", "--ports", "445,137-139", "--action", "deny", "--priority", "20")
	out := must("flow", "add", "no-smb-office", "--from", "office", "--to", "office", "--proto", "tcp", "--ports", "445", "--action", "deny", "--observe")
	if !strings.Contains(out, "warning: flow no-smb-office is shadowed by flow no-smb") {
		t.Fatalf("flow add did not warn of the shadowing flow:\n%s", out)
	}
	out = must("quarantine", "10.1.0.66", "--ttl", "2h", "--reason", "lateral movement")
	if !strings.Contains(out, "committed quarantine host:10.1.0.66") {
		t.Fatalf("quarantine output:\n%s", out)
	}

	cmds := env.Node.Commands()
	if len(cmds) != 5 {
		t.Fatalf("%d commands committed, want 5", len(cmds))
	}
	z := cmds[0].Zone
	if cmds[0].Op != intel.OpSetZone || z.Name != "office" || z.CIDRs[0] != netip.MustParsePrefix("10.1.0.0/16") || z.Sites[0] != "branch-1" ||
		z.AutoQuarantine == nil || z.AutoQuarantine.Rules[0] != "ssh-internal-bruteforce" || z.AutoQuarantine.MaxTTLSeconds != 7200 {
		t.Errorf("zone add: %+v", z)
	}
	if z := cmds[1].Zone; len(z.CIDRs) != 2 || !z.DefaultDeny {
		t.Errorf("zone add servers: %+v", z)
	}
	fl := cmds[2].Flow
	if cmds[2].Op != intel.OpSetFlow || fl.From != "*" || fl.To != "office" || fl.Proto != "tcp" || len(fl.Ports) != 2 ||
		fl.Ports[1] != (intel.PortRange{From: 137, To: 139}) || fl.Action != intel.FlowDeny || fl.Priority != 20 || fl.Mode != "" {
		t.Errorf("flow add: %+v", fl)
	}
	if cmds[3].Flow.Mode != intel.FlowObserve {
		t.Errorf("flow add --observe: %+v", cmds[3].Flow)
	}
	if q := cmds[4]; q.Op != intel.OpQuarantine || q.Host != netip.MustParseAddr("10.1.0.66") || q.TTLSeconds != 7200 || q.Reason != "lateral movement" {
		t.Errorf("quarantine: %+v", q)
	}

	out = must("flow", "list")
	if !strings.Contains(out, "445,137-139") || !strings.Contains(out, "shadowed by no-smb") {
		t.Fatalf("flow list:\n%s", out)
	}
	out = must("zone", "list", "-o", "json")
	var zones []intel.Zone
	if err := json.Unmarshal([]byte(out), &zones); err != nil || len(zones) != 2 {
		t.Fatalf("zone list -o json: %v\n%s", err, out)
	}
	out = must("quarantine", "list")
	if !strings.Contains(out, "10.1.0.66") || !strings.Contains(out, "office") {
		t.Fatalf("quarantine list:\n%s", out)
	}
	must("quarantine", "release", "10.1.0.66")
	must("flow", "remove", "no-smb-office")
	if c := env.Node.Commands(); c[5].Op != intel.OpRelease || c[6].Op != intel.OpRemoveFlow || c[6].FlowName != "no-smb-office" {
		t.Errorf("release, remove: %+v %+v", c[5], c[6])
	}

	// Bad input is named before anything is signed.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"zone", "add", "Office", "--cidr", "10.0.0.0/8"}, "zone name"},
		{[]string{"zone", "add", "x", "--cidr", "10.0.0/8"}, "--cidr"},
		{[]string{"flow", "add", "f", "--from", "a", "--to", "b", "--action", "deny", "--proto", "tcp", "--ports", "80,9x"}, "item 2"},
		{[]string{"flow", "add", "f", "--from", "a", "--to", "b", "--action", "drop"}, "action"},
		{[]string{"quarantine", "10.1.0.300"}, "host"},
		{[]string{"quarantine", "10.1.0.7", "--ttl", "1000h"}, "ttl_seconds"},
	} {
		out, err := runSegmentCLI(t, env, deps, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (%s), want an error naming %q", c.args, err, out, c.want)
		}
	}
	if n := len(env.Node.Commands()); n != 7 {
		t.Fatalf("%d commands committed after the bad ones, want 7", n)
	}
}
