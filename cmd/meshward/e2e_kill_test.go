package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAgentKilledAndRestarted runs three `meshward agent` processes (one
// founds the mesh with an operator key, two join with a join token that
// operator made), commits a block signed with the operator key, kills one
// agent with SIGKILL while log traffic flows, and checks that the other two
// keep enforcing and still commit a new block (two of three voters), and
// that the killed agent, restarted from its data directory, catches up on
// the block committed while it was down.
func TestAgentKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three agents")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	opKey, opPub := operatorKeygen(t, bin, dir)
	dirs := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}
	socks := make([]string, len(dirs))
	for i, d := range dirs {
		socks[i] = filepath.Join(d, "admin.sock")
	}
	// The agent that is killed comes back on the same port.
	listenC := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))

	writeConfig(t, dirs[0], "site-a", founderConsensus(opPub))
	a := startAgent(t, bin, dirs[0])
	var st statusJSON
	poll30(t, ctx, "node a to lead a mesh of one", func() bool {
		return status(bin, socks[0], &st) && st.Mesh.Leader != "" && len(st.Node.Addrs) > 0
	})
	join := fmt.Sprintf("  join: [%q]\n  join_token: %q\n", st.Node.Addrs[0], joinToken(t, ctx, bin, socks[0], opKey, 2))
	writeConfig(t, dirs[1], "site-b", join)
	startAgent(t, bin, dirs[1])
	writeAgentConfig(t, dirs[2], "site-c", listenC, join)
	c := startAgent(t, bin, dirs[2])
	for i := range dirs {
		poll30(t, ctx, fmt.Sprintf("node %d to see three members and a leader", i), func() bool {
			return status(bin, socks[i], &st) && st.Mesh.Members == 3 && st.Mesh.Leader != ""
		})
	}

	block(t, ctx, bin, socks[0], opKey, "203.0.113.31")
	for i := range dirs {
		poll30(t, ctx, fmt.Sprintf("node %d to hold the first block", i), func() bool { return holds(bin, socks[i], "203.0.113.31") })
	}

	// Log traffic on every node while c dies.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				f, err := os.OpenFile(filepath.Join(d, "auth.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
				if err != nil {
					continue
				}
				fmt.Fprintf(f, "%s host sshd[%d]: Failed password for root from 198.51.100.%d port %d ssh2\n",
					time.Now().Format(time.Stamp), 1000+k, 100+i, 40000+k)
				f.Close()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(200 * time.Millisecond) // let traffic flow before the kill
	c.kill(t)

	// The two survivors keep enforcing, and commit a new block.
	for i := range 2 {
		if !holds(bin, socks[i], "203.0.113.31") {
			t.Fatalf("node %d lost the first block when c died", i)
		}
	}
	poll30(t, ctx, "a block to commit with two of three voters", func() bool {
		out, err := cli(bin, "policy", "block", "203.0.113.32", "--reason", "while c is down", "--node", socks[1], "--operator-key", opKey, "--timeout", "5s")
		if err != nil {
			t.Logf("policy block while c is down: %v: %s", err, out)
		}
		return err == nil
	})
	for i := range 2 {
		poll30(t, ctx, fmt.Sprintf("node %d to hold the second block", i), func() bool { return holds(bin, socks[i], "203.0.113.32") })
	}

	// c comes back from its data directory and catches up.
	startAgent(t, bin, dirs[2])
	poll30(t, ctx, "the restarted node to hold the block committed while it was down", func() bool {
		return holds(bin, socks[2], "203.0.113.32") && holds(bin, socks[2], "203.0.113.31")
	})
	poll30(t, ctx, "the restarted node to see three members", func() bool {
		return status(bin, socks[2], &st) && st.Mesh.Members == 3 && st.Mesh.Leader != ""
	})

	// SIGHUP with a broken file: a keeps running on its configuration and
	// counts the refused reload.
	if err := os.WriteFile(filepath.Join(dirs[0], "node.yaml"), []byte("log_level: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll30(t, ctx, "node a to count the refused reload", func() bool {
		return status(bin, socks[0], &st) && st.Node.Counters["reload_failures"] == 1
	})
	if !holds(bin, socks[0], "203.0.113.32") {
		t.Fatal("node a lost a block after a refused reload")
	}
}

type statusJSON struct {
	Node struct {
		Addrs    []string          `json:"addrs"`
		Counters map[string]uint64 `json:"counters"`
	} `json:"node"`
	Mesh struct {
		Leader  string `json:"leader"`
		Members int    `json:"members"`
	} `json:"mesh"`
}

func status(bin, sock string, st *statusJSON) bool {
	out, err := cli(bin, "status", "--node", sock, "-o", "json", "--timeout", "2s")
	return err == nil && json.Unmarshal(out, st) == nil
}

// block blocks addr mesh-wide through the node behind sock, signed with
// the operator key opKey.
func block(t *testing.T, ctx context.Context, bin, sock, opKey, addr string) {
	t.Helper()
	poll30(t, ctx, "block "+addr, func() bool {
		out, err := cli(bin, "policy", "block", addr, "--reason", "e2e kill test", "--node", sock, "--operator-key", opKey, "--timeout", "5s")
		if err != nil {
			t.Logf("policy block %s: %v: %s", addr, err, out)
		}
		return err == nil
	})
}

// holds reports whether the node behind sock lists a mesh-wide block of
// addr among the policies it enforces.
func holds(bin, sock, addr string) bool {
	out, err := cli(bin, "policy", "list", "-o", "json", "--node", sock, "--timeout", "2s")
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
		if p.Indicator.Value == addr && p.Action == "block" && p.Scope == "mesh" {
			return true
		}
	}
	return false
}

// poll30 is poll bounded to 30 seconds (and by ctx).
func poll30(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	poll(t, ctx, what, cond)
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
