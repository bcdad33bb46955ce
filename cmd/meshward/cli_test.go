package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

var update = flag.Bool("update", false, "rewrite the CLI golden files")

const (
	cliNodeID = "12D3KooWCliTestNodeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	cliPeerID = "12D3KooWCliTestPeerBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

var fixed = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// cliEnv is an admin API over a fake node with fixed data.
func cliEnv(t *testing.T) *admintest.Env {
	t.Helper()
	return cliEnvWith(t, admin.Options{Version: "test"})
}

// cliEnvWith is cliEnv with the given server options.
func cliEnvWith(t *testing.T, opts admin.Options) *admintest.Env {
	t.Helper()
	t.Setenv(envToken, "")
	t.Setenv(envNode, "")
	n := admintest.NewNode(cliNodeID)
	n.St.Node.StartedAt = fixed
	n.St.Node.Addrs = []string{"/ip4/127.0.0.1/tcp/7946/p2p/" + cliNodeID}
	n.St.Node.Counters = map[string]uint64{"detections": 3, "proposals": 1}
	n.St.Mesh.Term, n.St.Mesh.CommitIndex, n.St.Mesh.AppliedIndex = 2, 17, 17
	n.St.Mesh.Peers, n.St.Mesh.Policies = 1, 1
	n.St.Mesh.Kind = "server"
	n.MemberSet = append(n.MemberSet, admin.Member{ID: cliPeerID, Site: "branch", Kind: "edge", AdmittedAt: fixed, Connected: true})
	n.MemberSet[0].AdmittedAt, n.MemberSet[0].Kind = fixed, "server"
	n.PeerSet = []admin.Peer{{ID: cliPeerID, Site: "branch", Member: true, Addrs: []string{"/ip4/127.0.0.1/tcp/7947"}}}
	ind, _ := intel.ParseIndicator("203.0.113.7")
	p := intel.NewPolicy(intel.ActionBlock, ind, "corroborated by 2 nodes (ssh-bruteforce)", cliNodeID, fixed, 0)
	n.AddPolicy(p, false)
	for i, origin := range []string{cliPeerID, cliNodeID} {
		n.AddSighting(store.SightingRecord{Origin: origin, Seq: uint64(i + 1), Received: fixed.Add(time.Duration(i) * time.Minute), Sent: fixed,
			Sighting: intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Count: 5 + i, Confidence: 80, FirstSeen: fixed.Add(-time.Minute), LastSeen: fixed, Site: "s" + string(rune('a'+i))}})
	}
	// A peer's report of the blocked indicator, valid without end.
	n.AddReport(store.ReportRecord{Origin: cliPeerID, Seq: 9, Received: fixed.Add(2 * time.Minute), Sent: fixed.Add(2 * time.Minute),
		Report: intel.IndicatorReport{Indicator: ind, Source: "feed:abuse-ch", Confidence: 70, Labels: []string{"scanner", "ssh"},
			Technique: "T1110", ValidFrom: fixed.Add(-24 * time.Hour)}})
	n.Clock = opts.Now
	return admintest.Start(t, n, opts)
}

// testDeps are a fixed clock (fixed), a seeded random stream and a fixed
// join token secret, so that what the commands sign and print is the same
// in every run. Share one value across the commands of a test: each
// command draws its nonce from the stream.
func testDeps() cliDeps {
	var seed [32]byte
	copy(seed[:], "meshward cli test random stream")
	return cliDeps{
		now:  func() time.Time { return fixed },
		rand: mrand.NewChaCha8(seed),
		newJoinToken: func() (string, ed25519.PublicKey, error) {
			const secret = "mwjoin_clitestsecret0123456789abcdefghijklmnop"
			priv, err := intel.JoinTokenKey(secret)
			if err != nil {
				return "", nil, err
			}
			return secret, priv.Public().(ed25519.PublicKey), nil
		},
	}
}

// runCLI runs one admin command in process, with testDeps.
func runCLI(t *testing.T, env *admintest.Env, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLIWith(t, env, testDeps(), args...)
}

// runCLIWith is runCLI with the given dependencies.
func runCLIWith(t *testing.T, env *admintest.Env, deps cliDeps, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "meshward", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newAdminCmdsWith(deps)...)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	if env != nil && len(args) > 0 && args[0] != "config" {
		args = append(args, "--node", env.Socket)
	}
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "cli", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run '^%s$' -update)", err, strings.Split(t.Name(), "/")[0])
	}
	if got != string(want) {
		t.Errorf("%s output:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestCLIGolden(t *testing.T) {
	env := cliEnv(t)
	pid := intel.PolicyID(intel.ActionBlock, intel.Indicator{Type: intel.IPv4, Value: "203.0.113.7"})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status", []string{"status"}},
		{"members-list", []string{"members", "list"}},
		{"peers", []string{"peers"}},
		{"policy-list", []string{"policy", "list"}},
		{"policy-show", []string{"policy", "show", pid}},
		{"iocs-list", []string{"iocs", "list"}},
		{"iocs-show", []string{"iocs", "show", "203.0.113.7"}},
		{"sightings-list", []string{"sightings", "list"}},
		{"detections-list", []string{"detections", "list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runCLI(t, env, tc.args...)
			if err != nil {
				t.Fatalf("%v: %v (stderr %q)", tc.args, err, errOut)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestCLIJSON(t *testing.T) {
	env := cliEnv(t)
	out, _, err := runCLI(t, env, "members", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ms []admin.Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 2 || ms[1].ID != cliPeerID {
		t.Fatalf("members -o json: %v, %q", err, out)
	}
	if _, _, err := runCLI(t, env, "status", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Fatalf("-o yaml: %v", err)
	}
}

func TestCLIChangesAndRoles(t *testing.T) {
	env := cliEnvWith(t, admin.Options{Version: "test", Now: func() time.Time { return fixed.Add(time.Minute) }})
	deps := testDeps()
	run := func(args ...string) (string, string, error) { return runCLIWith(t, env, deps, args...) }
	keyFile := operatorKeyFile(t, env, "alice", intel.OperatorAdmin)
	t.Setenv(envOperatorKey, keyFile)

	// The local admin token beside the socket is used by default; the
	// mesh-wide block is signed with the operator key.
	out, _, err := run("policy", "block", "198.51.100.0/24", "--ttl", "2h", "--reason", "scanner")
	if err != nil {
		t.Fatalf("block: %v", err)
	}
	if !strings.Contains(out, "198.51.100.0/24 (cidr)") || !strings.Contains(out, "Signed by:  op:") {
		t.Fatalf("block output:\n%s", out)
	}
	out, _, err = run("policy", "block", "192.0.2.1", "--local")
	if err != nil || !strings.Contains(out, "Scope:      local") {
		t.Fatalf("local block: %v\n%s", err, out)
	}

	// A viewer token from `token create` may read, not block, even with
	// an admin operator's signature.
	secret, errOut, err := run("token", "create", "--role", "viewer", "--name", "ro")
	if err != nil || !strings.HasPrefix(secret, "mwt_") || !strings.Contains(errOut, "shown only this once") {
		t.Fatalf("token create: %v %q %q", err, secret, errOut)
	}
	tokFile := admintest.WriteTokenFile(t, strings.TrimSpace(secret))
	if _, _, err := run("status", "--token-file", tokFile); err != nil {
		t.Fatalf("viewer status: %v", err)
	}
	t.Setenv(envToken, strings.TrimSpace(secret))
	_, _, err = run("policy", "block", "203.0.113.99")
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer block: %v, want permission denied (403)", err)
	}
	t.Setenv(envToken, "mwt_0011223344556677_"+strings.Repeat("A", 43))
	_, _, err = run("status")
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad token: %v, want one line with 401", err)
	}
	t.Setenv(envToken, "")

	out, _, err = run("token", "list")
	if err != nil || !strings.Contains(out, "ro") || !strings.Contains(out, admin.LocalAdminName) || strings.Contains(out, "mwt_") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	pid := intel.PolicyID(intel.ActionBlock, intel.Indicator{Type: intel.CIDR, Value: "198.51.100.0/24"})
	if out, _, err := run("policy", "revoke", pid); err != nil || !strings.Contains(out, "committed revoke "+pid) {
		t.Fatalf("revoke: %v %q", err, out)
	}
	if _, _, err := run("policy", "revoke", pid); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("second revoke: %v, want 404", err)
	}
	if out, _, err := run("members", "remove", cliPeerID); err != nil || !strings.Contains(out, "committed remove_member "+cliPeerID) {
		t.Fatalf("members remove: %v %q", err, out)
	}
	out, _, err = run("audit")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"operator.block", "operator.revoke", "operator.remove_member", "local.block", "token.create", "denied"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit output lacks %q:\n%s", want, out)
		}
	}
}

func TestCLIUnreachable(t *testing.T) {
	t.Setenv(envToken, "")
	sock := filepath.Join(t.TempDir(), "nothing.sock")
	_, _, err := runCLI(t, nil, "status", "--node", sock)
	if err == nil || !strings.Contains(err.Error(), "cannot reach node at "+sock) {
		t.Fatalf("err %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`data_dir: /tmp/mw
listen:
  - not-a-multiaddr
corroboration:
  min_nodes: two
colour: blue
`), 0o600)
	out, errOut, err := runCLI(t, nil, "config", "validate", bad)
	var ee exitError
	if !errors.As(err, &ee) {
		t.Fatalf("err %v, want an exitError (exit 1, already reported)", err)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	for _, want := range []string{"corroboration.min_nodes", "colour", "listen[0]"} {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, want) {
				n++
				if !strings.HasPrefix(l, bad+": ") {
					t.Errorf("line %q does not name the file", l)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d lines mention %s, want 1:\n%s", n, want, errOut)
		}
	}
	if len(lines) != 3 {
		t.Errorf("%d lines, want 3:\n%s", len(lines), errOut)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("data_dir: /tmp/mw\n"), 0o600)
	out, _, err = runCLI(t, nil, "config", "validate", good)
	if err != nil || out != good+": ok\n" {
		t.Fatalf("good config: %v %q", err, out)
	}
}
