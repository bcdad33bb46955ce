package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/responders/nft"
)

// A node with the nftables backend and a JSON-lines event output: its own
// detection ends in the kernel set, and the SIEM sees every step.
func TestNodeEnforcesInNftablesAndReportsEvents(t *testing.T) {
	fd := testenv.NetNS(t, fmt.Sprintf("mwnode-%d", os.Getpid())) // unique among concurrent test processes
	events := filepath.Join(t.TempDir(), "events.jsonl")
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Site = "fw"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Consensus.Bootstrap = true
	cfg.Consensus.BootstrapOperators = testBootstrapOperators()
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
