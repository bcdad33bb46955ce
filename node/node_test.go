package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// startSingle starts a one-node mesh in a temporary directory.
func startSingle(t *testing.T, mutate func(*Config)) *Node {
	t.Helper()
	return startSingleWith(t, Options{}, mutate)
}

// startSingleWith is startSingle with options.
func startSingleWith(t *testing.T, opts Options, mutate func(*Config)) *Node {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Site = "solo"
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Consensus.Bootstrap = true
	cfg.Consensus.BootstrapOperators = testBootstrapOperators()
	cfg.Corroboration.MinNodes = 1
	cfg.Detectors.Paths = []string{filepath.Join(dir, "auth.log")}
	cfg.Detectors.FromStart = true
	cfg.Detectors.PollInterval = 10 * time.Millisecond
	cfg.MetricsListen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	for _, p := range cfg.Detectors.Paths {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := Start(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := fmt.Fprintln(f, l); err != nil {
			t.Fatal(err)
		}
	}
}

func bruteForce(host, src string, n int) []string {
	var out []string
	now := time.Now()
	for i := range n {
		ts := now.Add(time.Duration(i-n) * time.Second).Format(time.Stamp)
		out = append(out, fmt.Sprintf("%s %s sshd[%d]: Failed password for root from %s port %d ssh2", ts, host, 100+i, src, 40000+i))
	}
	return out
}

// With k=1 a lone node's own detection is enough for a mesh-wide block;
// the local block comes first, and the metrics show both.
func TestSingleNodeDetectsBlocksAndReports(t *testing.T) {
	n := startSingle(t, nil)
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })

	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.50"))
	// Twelve failures fill the slow brute force rule's bucket as well:
	// the attack is reported once, by ssh-bruteforce.
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "203.0.113.50", 12)...)
	waitFor(t, "the mesh-wide block to be enforced", func() bool {
		tl, _ := n.Timeline(ind)
		return n.Enforcing(ind) && !tl.MeshEnforced().IsZero()
	})
	tl, _ := n.Timeline(ind)
	if tl.Detected.IsZero() || tl.Received.Before(tl.Detected) || tl.Committed.Before(tl.Detected) {
		t.Errorf("timeline out of order: %+v", tl)
	}
	if s := n.Stats(); s.Detections != 1 || s.LocalDecisions != 1 || s.Proposals != 1 {
		t.Errorf("stats %+v, want one detection, one local decision, one proposal", s)
	}
	found := false
	for _, p := range n.Consensus().Policies(time.Now()) {
		found = found || (p.Indicator == ind && p.Action == intel.ActionBlock && len(p.Evidence) == 1 && p.Evidence[0].Origin == n.ID())
	}
	if !found {
		t.Errorf("no mesh-wide block with this node's evidence: %+v", n.Consensus().Policies(time.Now()))
	}

	// A local failure (no remote party) is counted, never reported.
	appendLog(t, n.deps.Config.Detectors.Paths[0], time.Now().Format(time.Stamp)+" solo sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice")
	waitFor(t, "the local failure to be counted", func() bool { return n.deps.Detectors.engine.Load().Stats().Local == 1 })
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"meshward_detector_lines_local_total 1",
		`meshward_detector_resolve_total{result="added"} 0`,
		"\nmeshward_detector_files_watched ",
		"meshward_detector_file_watch_failures_total 0",
		"meshward_detections_total 1",
		"meshward_proposals_total 1",
		`meshward_detector_fired_total{rule="ssh-bruteforce"} 1`,
		`meshward_detector_fired_total{rule="ssh-slow-bruteforce"} 0`,
		`meshward_detector_suppressed_total{rule="ssh-slow-bruteforce"} 1`,
		"meshward_gossip_rejected_total",
		"meshward_policy_enforce_seconds_count",
		"meshward_mesh_policies 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	fi, err := os.Stat(n.deps.Config.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode %v, want a 0600 socket", fi.Mode())
	}
}

// A protected range vetoes the mesh-wide block and the local one.
func TestProtectedRangeIsNeverBlocked(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.Protected = []string{"203.0.113.0/24"} })
	waitFor(t, "the node to admit itself", func() bool { return n.Consensus().IsMember(n.ID()) })
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.51"))
	other := intel.IndicatorFromAddr(netip.MustParseAddr("198.51.100.51"))
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "203.0.113.51", 6)...)
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "198.51.100.51", 6)...)
	// The unprotected attacker is blocked; by then the protected one has
	// been read, as it comes first in the log.
	waitFor(t, "the other attacker to be blocked", func() bool { return n.Enforcing(other) })
	if n.Enforcing(ind) {
		t.Fatal("a protected address is blocked")
	}
	for _, p := range n.Consensus().Policies(time.Now()) {
		if p.Indicator == ind {
			t.Fatalf("mesh-wide policy covers a protected address: %+v", p)
		}
	}
}

// Sightings can arrive over syslog instead of a file.
func TestSyslogSourceFeedsDetection(t *testing.T) {
	n := startSingle(t, func(c *Config) {
		c.Detectors.Paths = nil
		c.Detectors.Syslog.Enabled = true
		c.Detectors.Syslog.UDP = "127.0.0.1:0"
		c.Detectors.Syslog.TCP = ""
	})
	udp, tcp := n.SyslogAddrs()
	if udp == nil || tcp != nil {
		t.Fatalf("syslog addrs udp=%v tcp=%v, want UDP only", udp, tcp)
	}
	conn, err := net.Dial("udp", udp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("192.0.2.77"))
	for _, l := range bruteForce("gw", "192.0.2.77", 6) {
		if _, err := conn.Write([]byte("<38>" + l)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a detection from syslog", func() bool { tl, _ := n.Timeline(ind); return !tl.Detected.IsZero() })
}

// Ranges protected through consensus (the mesh's own addresses, or an
// operator's) are never reported, though the detectors were built before
// they were known.
func TestDetectionOfMeshProtectedRangeSuppressed(t *testing.T) {
	n := startSingle(t, nil)
	waitFor(t, "the node to lead", func() bool { return n.Consensus().IsLeader() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(t, "the mesh ID", func() bool { return n.Consensus().MeshID() != "" })
	if err := n.Consensus().ProposeOperator(ctx, signOperator(t, n, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "198.18.0.0/15"})); err != nil {
		t.Fatal(err)
	}
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "198.18.0.5", 6)...)
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "203.0.113.60", 6)...)
	other := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.60"))
	waitFor(t, "the unprotected attacker's detection", func() bool { tl, _ := n.Timeline(other); return !tl.Detected.IsZero() })
	st := n.Stats()
	if st.Suppressed != 1 || st.Detections != 1 {
		t.Fatalf("stats %+v, want 1 suppressed and 1 detection", st)
	}
	if tl, ok := n.Timeline(intel.IndicatorFromAddr(netip.MustParseAddr("198.18.0.5"))); ok {
		t.Fatalf("protected address has a timeline: %+v", tl)
	}
}

// Start gives up when its context ends, and the node still closes
// cleanly: both while building the dependencies and while starting.
func TestStartHonoursContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	newCfg := func() Config {
		cfg := DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.Consensus.Bootstrap = true
		cfg.Consensus.BootstrapOperators = testBootstrapOperators()
		return cfg
	}
	if n, err := Start(cancelled, newCfg(), Options{}); !errors.Is(err, context.Canceled) {
		if err == nil {
			n.Close()
		}
		t.Fatalf("Start with a cancelled context: %v, want context.Canceled", err)
	}

	d, err := NewDeps(context.Background(), newCfg(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(d)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	if err := n.Start(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Node.Start with a cancelled context: %v, want context.Canceled", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}
