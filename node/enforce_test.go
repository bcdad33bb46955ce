package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/nft"
)

// netNS creates a network namespace for the nftables backend, removed when
// the test ends; it skips where that is impossible.
func netNS(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nftables enforcement needs root (CAP_NET_ADMIN) for a network namespace; CI runs it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (Debian package iproute2) to create a network namespace")
	}
	name := fmt.Sprintf("mwnode-%d", os.Getpid()) // unique among concurrent test processes
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// A node with the nftables backend and a JSON-lines event output: its own
// detection ends in the kernel set, and the SIEM sees every step.
func TestNodeEnforcesInNftablesAndReportsEvents(t *testing.T) {
	fd := netNS(t)
	events := filepath.Join(t.TempDir(), "events.jsonl")
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Site = "fw"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Consensus.Bootstrap = true
	cfg.Corroboration.MinNodes = 1
	cfg.Detectors.Paths = []string{filepath.Join(dir, "auth.log")}
	cfg.Detectors.FromStart = true
	cfg.Detectors.PollInterval = 10 * time.Millisecond
	cfg.LocalBlock.Enabled = false // the mesh path alone
	cfg.Responders.DryRun = false
	cfg.Responders.Nftables.Enabled = true
	cfg.Events.JSONLines = events
	if err := os.WriteFile(cfg.Detectors.Paths[0], nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := Start(context.Background(), cfg, Options{NftablesNetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			n.Close()
		}
	}()
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })

	ind := intel.IndicatorFromAddr(netip.MustParseAddr("198.51.100.99"))
	appendLog(t, cfg.Detectors.Paths[0], bruteForce("fw", "198.51.100.99", 6)...)
	fw, err := nft.New(nft.WithNetNS(fd))
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	waitFor(t, "the block in the kernel set", func() bool {
		held, err := fw.Current(context.Background())
		_, ok := held[ind.Key()]
		return err == nil && ok
	})
	waitFor(t, "the commit on the timeline", func() bool { tl, _ := n.Timeline(ind); return !tl.MeshEnforced().IsZero() })
	if !n.Enforcing(ind) {
		t.Error("Enforcing does not see the kernel's block")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true

	// Closing the node keeps the table: blocks survive a restart.
	held, err := fw.Current(context.Background())
	if _, ok := held[ind.Key()]; err != nil || !ok {
		t.Fatalf("block gone after the node closed: %v", err)
	}
	f, err := os.Open(events)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kinds := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		kinds[e.Kind]++
	}
	for _, k := range []string{"detection", "policy_committed", "policy_enforced"} {
		if kinds[k] == 0 {
			t.Errorf("no %s event in %v", k, kinds)
		}
	}
}
