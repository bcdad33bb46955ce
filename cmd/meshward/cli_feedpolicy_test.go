package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
)

// runFeedCLI runs `meshward intel ARGS --node SOCKET` with the feed policy
// and warninglist verbs made with deps.
func runFeedCLI(t *testing.T, env *admintest.Env, deps cliDeps, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	in := &cobra.Command{Use: "intel"}
	in.AddCommand(newFeedPolicyCmd(deps), newWarninglistCmd(deps))
	root.AddCommand(in)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(append([]string{"intel"}, args...), "--node", env.Socket))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCLIFeedPolicyAndWarninglistSignCommands(t *testing.T) {
	env, deps := operatorEnv(t)
	for _, args := range [][]string{
		{"feed-policy", "set", "feodo", "--source", "feodo-tracker", "--min-confidence", "90", "--types", "ipv4,CIDR", "--ttl", "12h"},
		{"feed-policy", "remove", "feodo"},
		{"warninglist", "add", "198.51.100.0/24", "--reason", "partner CDN"},
		{"warninglist", "add", "partner-cdn.net"},
		{"warninglist", "remove", "partner-cdn.net"},
	} {
		if out, err := runFeedCLI(t, env, deps, args...); err != nil {
			t.Fatalf("%v: %v (%s)", args, err, out)
		}
	}
	cmds := env.Node.Commands()
	if len(cmds) != 5 {
		t.Fatalf("%d commands committed, want 5", len(cmds))
	}
	p := cmds[0].FeedPolicy
	if cmds[0].Op != intel.OpSetFeedPolicy || p == nil || p.Name != "feodo" || p.Source != "feodo-tracker" || p.MinConfidence != 90 ||
		len(p.Types) != 2 || p.Types[1] != intel.CIDR || p.TTLSeconds != 12*3600 || !p.Enabled || len(p.Publishers) != 0 {
		t.Errorf("set: %+v %+v", cmds[0], p)
	}
	if cmds[1].Op != intel.OpRemoveFeedPolicy || cmds[1].FeedPolicyName != "feodo" {
		t.Errorf("remove: %+v", cmds[1])
	}
	if cmds[2].Op != intel.OpWarninglistAdd || cmds[2].Indicator.Key() != "cidr:198.51.100.0/24" || cmds[2].Reason != "partner CDN" {
		t.Errorf("add: %+v", cmds[2])
	}
	if cmds[4].Op != intel.OpWarninglistRemove || cmds[4].Indicator.Key() != "domain:partner-cdn.net" {
		t.Errorf("remove: %+v", cmds[4])
	}
}

func TestCLIFeedPolicyList(t *testing.T) {
	env, deps := operatorEnv(t)
	if out, err := runFeedCLI(t, env, deps, "feed-policy", "set", "feodo", "--source", "feodo-tracker", "--types", "ipv4", "--ttl", "1h"); err != nil {
		t.Fatalf("set: %v (%s)", err, out)
	}
	if out, err := runFeedCLI(t, env, deps, "warninglist", "add", "partner-cdn.net", "--reason", "partner"); err != nil {
		t.Fatalf("add: %v (%s)", err, out)
	}
	out, err := runFeedCLI(t, env, deps, "feed-policy", "list")
	if err != nil || !strings.Contains(out, "feodo  ") || !strings.Contains(out, "feodo-tracker") || !strings.Contains(out, "voters") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = runFeedCLI(t, env, deps, "warninglist", "check", "cdn.partner-cdn.net")
	if err != nil || out != "cdn.partner-cdn.net is warninglisted by partner-cdn.net (list operator: partner)\n" {
		t.Fatalf("check of an operator entry: %v %q", err, out)
	}
}

func TestCLIFeedPolicyRefusesBadInput(t *testing.T) {
	env, deps := operatorEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"feed-policy", "set", "Bad Name", "--source", "x", "--types", "ipv4"}, "name"},
		{[]string{"feed-policy", "set", "feodo", "--source", "x", "--types", "url"}, "types[0]"},
		{[]string{"feed-policy", "set", "feodo", "--source", "x", "--types", "ipv4", "--min-confidence", "101"}, "min_confidence"},
		{[]string{"feed-policy", "set", "feodo", "--source", "x", "--types", "ipv4", "--ttl", "1000h"}, "ttl_seconds"},
		{[]string{"warninglist", "add", "https://x.example.net/a"}, "warninglist holds"},
	} {
		out, err := runFeedCLI(t, env, deps, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (%s), want an error naming %q", c.args, err, out, c.want)
		}
	}
	if n := len(env.Node.Commands()); n != 0 {
		t.Fatalf("%d commands committed", n)
	}
}

func TestCLIWarninglistCheck(t *testing.T) {
	env, deps := operatorEnv(t)
	out, err := runFeedCLI(t, env, deps, "warninglist", "check", "mail.google.com")
	if err != nil || out != "mail.google.com is warninglisted by google.com (list top-domains: among the most visited registrable domains)\n" {
		t.Fatalf("check: %q %v", out, err)
	}
	out, err = runFeedCLI(t, env, deps, "warninglist", "check", "203.0.113.9", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r warninglistCheck
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Warninglisted || r.Indicator.Key() != "ipv4:203.0.113.9" {
		t.Fatalf("check -o json: %q %v %+v", out, err, r)
	}
	out, err = runFeedCLI(t, env, deps, "warninglist", "list", "--builtin")
	if err != nil || !strings.Contains(out, "8.8.8.8") || !strings.Contains(out, "public-resolvers") {
		t.Fatalf("list --builtin: %v\n%s", err, out)
	}
}
