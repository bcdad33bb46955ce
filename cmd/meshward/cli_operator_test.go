package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/admin/admintest"
	"github.com/meshward/meshward/intel"
)

// operatorKeyFile writes the test operator key named name to a 0600 file
// and registers it with env's node in role.
func operatorKeyFile(t *testing.T, env *admintest.Env, name string, role intel.OperatorRole) string {
	t.Helper()
	priv := admintest.OperatorKey(name)
	path := filepath.Join(t.TempDir(), name+".key")
	if err := writeOperatorKey(path, priv); err != nil {
		t.Fatal(err)
	}
	if env != nil {
		env.Node.AddOperator(priv.Public().(ed25519.PublicKey), role, name)
	}
	return path
}

// operatorEnv is cliEnv at fixed+1m, so that commands signed at fixed are
// within their window, with alice (admin operator) registered and her key
// in $MESHWARD_OPERATOR_KEY.
func operatorEnv(t *testing.T) (*admintest.Env, cliDeps) {
	t.Helper()
	env := cliEnvWith(t, admin.Options{Version: "test", Now: func() time.Time { return fixed.Add(time.Minute) }})
	env.Node.Mesh = "mesh-cli-test"
	t.Setenv(envOperatorKey, operatorKeyFile(t, env, "alice", intel.OperatorAdmin))
	return env, testDeps()
}

func TestCLIOperatorGolden(t *testing.T) {
	env, deps := operatorEnv(t)
	bob := intel.FormatOperatorPublicKey(admintest.OperatorKey("bob").Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"policy-block-signed", []string{"policy", "block", "203.0.113.50", "--ttl", "2h", "--reason", "credential stuffing"}},
		{"policy-allow-signed", []string{"policy", "allow", "192.0.2.10", "--reason", "partner scanner"}},
		{"policy-block-signed-json", []string{"policy", "block", "203.0.113.51", "-o", "json"}},
		{"members-remove", []string{"members", "remove", cliPeerID}},
		{"protect-add", []string{"protect", "add", "192.0.2.53", "--reason", "site resolver"}},
		{"protect-list", []string{"protect", "list"}},
		{"mesh-rules-set", []string{"mesh", "rules", "set", "--min-nodes", "3", "--window", "15m"}},
		{"mesh-floors-set", []string{"mesh", "floors", "set", "--ipv4", "24", "--ipv6", "48"}},
		{"operator-add", []string{"operator", "add", bob, "--role", "responder", "--name", "bob"}},
		{"operator-list", []string{"operator", "list"}},
		{"token-create-join", []string{"token", "create", "--join", "--ttl", "1h", "--uses", "2"}},
		{"token-list-join", []string{"token", "list", "--join"}},
		{"operator-remove", []string{"operator", "remove", intel.OperatorKeyID(admintest.OperatorKey("bob").Public().(ed25519.PublicKey))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runCLIWith(t, env, deps, tc.args...)
			if err != nil {
				t.Fatalf("%v: %v (stderr %q)", tc.args, err, errOut)
			}
			if errOut != "" {
				out += "--- stderr\n" + errOut
			}
			golden(t, tc.name, out)
		})
	}
	cmds := env.Node.Commands()
	if len(cmds) != 10 {
		t.Fatalf("%d commands committed, want 10", len(cmds))
	}
	for _, c := range cmds {
		if c.Header.Mesh != "mesh-cli-test" || !c.Header.Issued.Equal(fixed) || c.Header.Expires.Sub(c.Header.Issued) != operatorCommandLife {
			t.Errorf("%s: header %+v", c.Op, c.Header)
		}
	}
	if env.Node.Corroboration.MinNodes != 3 || env.Node.Corroboration.Window != 15*time.Minute {
		t.Errorf("corroboration %+v", env.Node.Corroboration)
	}
	if env.Node.Floors != (intel.Floors{MinIPv4Bits: 24, MinIPv6Bits: 48}) {
		t.Errorf("floors %+v", env.Node.Floors)
	}
	// The join token's secret admits: its key is the one the mesh holds.
	priv, _ := intel.JoinTokenKey("mwjoin_clitestsecret0123456789abcdefghijklmnop")
	if toks := env.Node.JoinTokens(); len(toks) != 1 || toks[0].ID != intel.JoinTokenID(priv.Public().(ed25519.PublicKey)) || toks[0].Uses != 2 {
		t.Errorf("join tokens %+v", toks)
	}
}

func TestCLIOperatorRoles(t *testing.T) {
	env, deps := operatorEnv(t)
	viewer := env.TokenFile(t, admin.RoleViewer, "ro")
	responder := env.TokenFile(t, admin.RoleResponder, "oncall")
	bobKey := operatorKeyFile(t, env, "bob", intel.OperatorResponder)

	// A viewer token cannot submit, even an admin operator's block.
	_, _, err := runCLIWith(t, env, deps, "policy", "block", "203.0.113.60", "--token-file", viewer)
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("viewer block: %v, want permission denied (403)", err)
	}
	// A responder token blocks with a responder key, and cannot submit
	// an admin command even with an admin key.
	if _, _, err := runCLIWith(t, env, deps, "policy", "block", "203.0.113.60", "--token-file", responder, "--operator-key", bobKey); err != nil {
		t.Fatalf("responder block: %v", err)
	}
	_, _, err = runCLIWith(t, env, deps, "protect", "add", "10.0.0.0/8", "--token-file", responder)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "token of role admin") {
		t.Fatalf("responder token, admin command: %v", err)
	}
	// An admin token with a responder key: the key's role refuses it.
	_, _, err = runCLIWith(t, env, deps, "protect", "add", "10.0.0.0/8", "--operator-key", bobKey)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "role responder") {
		t.Fatalf("responder key, admin command: %v", err)
	}
	// A key the mesh does not know.
	stranger := operatorKeyFile(t, nil, "mallory", "")
	_, _, err = runCLIWith(t, env, deps, "policy", "block", "203.0.113.61", "--operator-key", stranger)
	if err == nil || !strings.Contains(err.Error(), "not an operator key") {
		t.Fatalf("unknown key: %v", err)
	}
	if n := len(env.Node.Commands()); n != 1 {
		t.Fatalf("%d commands committed, want 1", n)
	}
	// A public key from a file, as keygen's output saved; junk is refused
	// with the form it wants.
	carol := filepath.Join(t.TempDir(), "carol.pub")
	os.WriteFile(carol, []byte(intel.FormatOperatorPublicKey(admintest.OperatorKey("carol").Public().(ed25519.PublicKey))+"\n"), 0o644)
	if _, _, err := runCLIWith(t, env, deps, "operator", "add", carol, "--role", "responder", "--name", "carol"); err != nil {
		t.Fatalf("operator add from a file: %v", err)
	}
	_, _, err = runCLIWith(t, env, deps, "operator", "add", "ssh-ed25519", "AAAA", "--role", "responder", "--name", "x")
	if err == nil || !strings.Contains(err.Error(), "meshward-operator-ed25519") {
		t.Fatalf("operator add junk: %v", err)
	}
	_, _, err = runCLIWith(t, env, deps, "operator", "add", carol, "--role", "root", "--name", "x")
	if err == nil || !strings.Contains(err.Error(), "--role") {
		t.Fatalf("operator add --role root: %v", err)
	}
	// A block refused by the breadth floor says how to pass it.
	env.Node.FailSubmits(fmt.Errorf("%w: cidr 198.0.0.0/8: a /8 is wider than the /16 floor (too_broad)", admin.ErrRefused))
	_, _, err = runCLIWith(t, env, deps, "policy", "block", "198.0.0.0/8")
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "--wide") {
		t.Fatalf("too broad: %v, want 409 and the --wide hint", err)
	}
	env.Node.FailSubmits(nil)
	// Local decisions need no operator key.
	t.Setenv(envOperatorKey, filepath.Join(t.TempDir(), "none.key"))
	if _, _, err := runCLIWith(t, env, deps, "policy", "block", "203.0.113.62", "--local", "--token-file", responder); err != nil {
		t.Fatalf("local block without an operator key: %v", err)
	}
}

func TestCLIOperatorKeyMissing(t *testing.T) {
	env, deps := operatorEnv(t)
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv(envOperatorKey, "")
	_, _, err := runCLIWith(t, env, deps, "policy", "block", "203.0.113.70")
	if err == nil {
		t.Fatal("block without an operator key succeeded")
	}
	for _, want := range []string{filepath.Join(cfg, "meshward", "operator.key"), "meshward operator keygen", "consensus.bootstrap_operators", "meshward operator add", "--operator-key", envOperatorKey} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, _, err = runCLIWith(t, env, deps, "token", "create", "--join", "--operator-key", filepath.Join(cfg, "elsewhere.key"))
	if err == nil || !strings.Contains(err.Error(), "elsewhere.key (--operator-key)") {
		t.Fatalf("missing --operator-key: %v", err)
	}
	if len(env.Node.Commands()) != 0 || len(env.Node.JoinTokens()) != 0 {
		t.Fatal("a command was committed without an operator key")
	}
}

func TestCLIOperatorKeygen(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv(envOperatorKey, "")
	deps := testDeps()

	// The default path, created 0600 in a 0700 directory.
	out, errOut, err := runCLIWith(t, nil, deps, "operator", "keygen")
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	golden(t, "operator-keygen", out)
	path := filepath.Join(cfg, "meshward", "operator.key")
	for _, want := range []string{path, "bootstrap_operators: [\"meshward-operator-ed25519 ", "meshward operator add \"meshward-operator-ed25519 "} {
		if !strings.Contains(errOut, want) {
			t.Errorf("keygen stderr lacks %q:\n%s", want, errOut)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v, want 0600", err, fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v, mode %v, want 0700", err, di.Mode())
	}
	before, _ := os.ReadFile(path)

	// pubkey prints what keygen printed, from the default path.
	pub, _, err := runCLIWith(t, nil, deps, "operator", "pubkey")
	if err != nil || pub != out {
		t.Fatalf("pubkey: %v %q, want %q", err, pub, out)
	}
	k, err := intel.ParseOperatorPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	js, _, err := runCLIWith(t, nil, deps, "operator", "pubkey", "-o", "json")
	var v operatorKeyView
	if err != nil || json.Unmarshal([]byte(js), &v) != nil || v.KeyID != intel.OperatorKeyID(k) || v.File != path {
		t.Fatalf("pubkey -o json: %v %s", err, js)
	}

	// An existing key is never replaced.
	_, _, err = runCLIWith(t, nil, deps, "operator", "keygen")
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second keygen: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("second keygen changed the key file")
	}

	// --out and $MESHWARD_OPERATOR_KEY name another key.
	other := filepath.Join(t.TempDir(), "oncall.key")
	out2, _, err := runCLIWith(t, nil, deps, "operator", "keygen", "--out", other)
	if err != nil || out2 == out {
		t.Fatalf("keygen --out: %v %q", err, out2)
	}
	t.Setenv(envOperatorKey, other)
	if pub, _, err := runCLIWith(t, nil, deps, "operator", "pubkey"); err != nil || pub != out2 {
		t.Fatalf("pubkey from $%s: %v %q", envOperatorKey, err, pub)
	}

	// A key that others may read is refused.
	if err := os.Chmod(other, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLIWith(t, nil, deps, "operator", "pubkey")
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+other) {
		t.Fatalf("loose key: %v, want a refusal naming chmod 600", err)
	}
	// A file that is not a key.
	junk := filepath.Join(t.TempDir(), "junk.key")
	os.WriteFile(junk, []byte("not a key\n"), 0o600)
	_, _, err = runCLIWith(t, nil, deps, "operator", "pubkey", "--operator-key", junk)
	if err == nil || !strings.Contains(err.Error(), "keygen") {
		t.Fatalf("junk key: %v", err)
	}
}
