package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// TestTwoAgentProcesses runs two `meshward agent` processes from the built
// binary: the first founds the mesh with an operator key made by `meshward
// operator keygen` as its bootstrap operator; a join token made with
// `meshward token create --join` admits the second. It blocks an address
// through the first node's admin API with `meshward policy block`, signed
// with the operator key, sees the policy on the second node with `meshward
// policy list -o json`, and reads the audit entry.
func TestTwoAgentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two agents")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	opKey, opPub := operatorKeygen(t, bin, dir)
	d1, d2 := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeConfig(t, d1, "site-a", founderConsensus(opPub))
	startAgent(t, bin, d1)
	sock1, sock2 := filepath.Join(d1, "admin.sock"), filepath.Join(d2, "admin.sock")

	var st struct {
		Node struct{ Addrs []string } `json:"node"`
		Mesh struct {
			Leader  string `json:"leader"`
			Members int    `json:"members"`
		} `json:"mesh"`
	}
	poll(t, ctx, "node a to lead a mesh of one", func() bool {
		out, err := cli(bin, "status", "--node", sock1, "-o", "json", "--timeout", "2s")
		return err == nil && json.Unmarshal(out, &st) == nil && st.Mesh.Leader != "" && st.Mesh.Members == 1 && len(st.Node.Addrs) > 0
	})
	join := st.Node.Addrs[0]
	token := joinToken(t, ctx, bin, sock1, opKey, 1)
	writeConfig(t, d2, "site-b", fmt.Sprintf("  join: [%q]\n  join_token: %q\n", join, token))
	startAgent(t, bin, d2)
	poll(t, ctx, "node b to be admitted", func() bool {
		out, err := cli(bin, "status", "--node", sock2, "-o", "json", "--timeout", "2s")
		return err == nil && json.Unmarshal(out, &st) == nil && st.Mesh.Members == 2 && st.Mesh.Leader != ""
	})

	if out, err := cli(bin, "policy", "block", "203.0.113.9", "--reason", "e2e test", "--node", sock1, "--operator-key", opKey); err != nil {
		t.Fatalf("policy block: %v\n%s", err, out)
	}
	poll(t, ctx, "node b to hold the block", func() bool {
		out, err := cli(bin, "policy", "list", "-o", "json", "--node", sock2, "--timeout", "2s")
		if err != nil {
			return false
		}
		var ps []struct {
			Action    string `json:"action"`
			Scope     string `json:"scope"`
			Indicator struct{ Value string }
		}
		if json.Unmarshal(out, &ps) != nil {
			return false
		}
		for _, p := range ps {
			if p.Indicator.Value == "203.0.113.9" && p.Action == "block" && p.Scope == "mesh" {
				return true
			}
		}
		return false
	})

	// A file of 2,500 addresses is blocked as two bulk commands on node a;
	// node b lists all of them page by page.
	var feed strings.Builder
	feed.WriteString("# e2e feed\n")
	for i := range 2500 {
		fmt.Fprintf(&feed, "198.18.%d.%d\n", i>>8, i&255)
	}
	feedFile := filepath.Join(dir, "feed.txt")
	if err := os.WriteFile(feedFile, []byte(feed.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(bin, "policy", "block", "--file", feedFile, "--ttl", "1h", "--reason", "e2e feed", "--node", sock1, "--operator-key", opKey); err != nil ||
		!strings.Contains(string(out), "2500 of 2500 distinct indicators committed (block_bulk) in 2 commands") {
		t.Fatalf("policy block --file: %v\n%s", err, out)
	}
	poll(t, ctx, "node b to list every block, page by page", func() bool {
		out, err := cli(bin, "policy", "list", "-o", "json", "--scope", "mesh", "--page-size", "300", "--node", sock2, "--timeout", "5s")
		var ps []struct{ ID string }
		if err != nil || json.Unmarshal(out, &ps) != nil {
			return false
		}
		seen := map[string]bool{}
		for _, p := range ps {
			seen[p.ID] = true
		}
		return len(ps) == 2501 && len(seen) == 2501
	})

	out, err := cli(bin, "audit", "-o", "json", "--node", sock1)
	if err != nil {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("203.0.113.9")) || !bytes.Contains(out, []byte("local-admin")) ||
		!bytes.Contains(out, []byte("operator.block")) || !bytes.Contains(out, []byte("operator="+opKeyID(t, opPub))) ||
		!bytes.Contains(out, []byte("operator.block_bulk")) || !bytes.Contains(out, []byte("count=2000")) {
		t.Fatalf("audit trail does not record the block by the local admin token and the operator key:\n%s", out)
	}
	// Without an operator key, a mesh-wide block is refused with the way
	// to make one.
	out, err = cli(bin, "policy", "block", "203.0.113.10", "--node", sock1, "--operator-key", filepath.Join(dir, "none.key"))
	if err == nil || !strings.Contains(string(out), "meshward operator keygen") {
		t.Fatalf("block without an operator key: err %v, output %s", err, out)
	}
	// A wrong token is refused with 401 and a non-zero exit.
	bad := filepath.Join(dir, "bad.token")
	if err := os.WriteFile(bad, []byte("mwt_0000000000000000_nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(bin, "policy", "list", "--node", sock1, "--token-file", bad); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("bad token: err %v, output %s", err, out)
	}
}

// operatorKeygen makes an operator key with `meshward operator keygen
// --out` in dir and returns its file and public key text.
func operatorKeygen(t *testing.T, bin, dir string) (keyFile, pub string) {
	t.Helper()
	keyFile = filepath.Join(dir, "operator.key")
	out, err := cli(bin, "operator", "keygen", "--out", keyFile, "-o", "json")
	if err != nil {
		t.Fatalf("operator keygen: %v\n%s", err, out)
	}
	var v struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.PublicKey == "" {
		t.Fatalf("operator keygen -o json: %v\n%s", err, out)
	}
	return keyFile, v.PublicKey
}

// opKeyID is the key ID of an operator public key in text form, as
// `meshward operator pubkey -o json` would name it.
func opKeyID(t *testing.T, pub string) string {
	t.Helper()
	k, err := intel.ParseOperatorPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return intel.OperatorKeyID(k)
}

// founderConsensus is the consensus section of a node that founds a mesh
// with pub as its first operator key.
func founderConsensus(pub string) string {
	return fmt.Sprintf("  bootstrap: true\n  bootstrap_operators: [%q]\n", pub)
}

// joinToken creates a join token for uses nodes through the node behind
// sock, signed with the operator key, and returns its secret.
func joinToken(t *testing.T, ctx context.Context, bin, sock, opKey string, uses int) string {
	t.Helper()
	var v struct {
		Token string `json:"token"`
	}
	poll(t, ctx, "a join token", func() bool {
		out, err := cli(bin, "token", "create", "--join", "--ttl", "10m", "--uses", fmt.Sprint(uses),
			"--node", sock, "--operator-key", opKey, "-o", "json", "--timeout", "5s")
		if err != nil {
			t.Logf("token create --join: %v: %s", err, out)
			return false
		}
		return json.Unmarshal(out, &v) == nil && v.Token != ""
	})
	return v.Token
}

func writeConfig(t *testing.T, dir, site, consensus string) {
	t.Helper()
	writeAgentConfig(t, dir, site, "/ip4/127.0.0.1/tcp/0", consensus)
}

// writeAgentConfig writes dir/node.yaml for an agent listening on listen.
func writeAgentConfig(t *testing.T, dir, site, listen, consensus string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data_dir: %s
site: %s
listen: [%s]
consensus:
%sdetectors:
  paths: [%s]
log_level: debug
`, dir, site, listen, consensus, filepath.Join(dir, "auth.log"))
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// agentProc is a running agent process.
type agentProc struct {
	cmd    *exec.Cmd
	killed bool
}

// kill ends the agent with SIGKILL, as a crash would, and waits for it.
func (a *agentProc) kill(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	a.killed = true
}

func startAgent(t *testing.T, bin, dir string) *agentProc {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "--config", filepath.Join(dir, "node.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: cmd}
	t.Cleanup(func() {
		if a.killed {
			logf.Close()
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent in %s exited with %v", dir, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("agent in %s did not stop within 30s of SIGTERM", dir)
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("agent log %s:\n%s", dir, b)
		}
	})
	return a
}

func cli(bin string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "MESHWARD_TOKEN=")
	err := cmd.Run()
	return out.Bytes(), err
}

func poll(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// buildBinary builds meshward into dir; it skips where go is missing.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; cannot build the binary")
	}
	bin := filepath.Join(dir, "meshward")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}
