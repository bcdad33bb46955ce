//go:build linux

package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/responders/nft"
)

// needNetns stops t (skip, or fail under MESHWARD_REQUIRE_PRIVILEGED=1)
// unless namespace mode can run here.
func needNetns(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "iproute2")
	if err := NetnsPreflight(false); err != nil {
		testenv.Unavailable(t, "namespace mode: %v", err)
	}
}

// meshwardBinary builds cmd/meshward into a directory of t (or takes
// MESHWARD_BINARY), for the agents to run.
func meshwardBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("MESHWARD_BINARY"); b != "" {
		return b
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out := filepath.Join(t.TempDir(), "meshward")
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/meshward/meshward/cmd/meshward")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/meshward: %v\n%s", err, b)
	}
	return out
}

// netemAvailable reports whether this kernel has netem: a lab of one
// node, links to itself refused or not.
func netemAvailable(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("tc"); err != nil {
		return false
	}
	ctx := context.Background()
	l, err := NewLab(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = l.probeNetem(ctx)
	if err != nil && !errors.Is(err, ErrNetnsNoNetem) {
		t.Fatal(err)
	}
	return err == nil
}

// assertCleanedUp: no namespace with prefix, no agent process left.
func assertCleanedUp(t *testing.T, prefix string, pids []int) {
	t.Helper()
	left, err := LeftoverNamespaces(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	if len(pids) == 0 {
		t.Error("no agent process recorded")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("agent process %d still exists after Close (kill -0: %v)", pid, err)
		}
	}
}

// TestNetnsLabPartition: the hub's bridge carries traffic between node
// namespaces; a partition drops it between groups and not inside one;
// a heal restores it; Close removes every namespace.
func TestNetnsLabPartition(t *testing.T) {
	needNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := NewLab(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !strings.HasPrefix(l.Namespace(2), l.Prefix()) || !LabPrefix.Contains(l.Addr(2)) {
		t.Fatalf("node 2: namespace %s, address %s: want prefix %s and %s", l.Namespace(2), l.Addr(2), l.Prefix(), LabPrefix)
	}
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, labListen(t, l, i))
	}
	dial := func(from, to int) error {
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := l.DialTime(dctx, from, addrs[to])
		return err
	}
	// reach waits until from connects to to (links come up, addresses
	// are resolved); the deadline only bounds a failure.
	reach := func(from, to int) error {
		return Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			err := dial(from, to)
			return err == nil, fmt.Sprint(err)
		})
	}
	for _, p := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
		if err := reach(p[0], p[1]); err != nil {
			t.Fatalf("before the partition, node %d to node %d: %v", p[0], p[1], err)
		}
	}
	if err := l.Partition([]int{0}, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := reach(1, 2); err != nil {
		t.Errorf("inside a group, node 1 to node 2: %v", err)
	}
	for _, p := range [][2]int{{0, 1}, {2, 0}} {
		if err := dial(p[0], p[1]); err == nil {
			t.Errorf("across the partition, node %d reached node %d", p[0], p[1])
		}
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := reach(0, 2); err != nil {
		t.Errorf("after the heal, node 0 to node 2: %v", err)
	}
	prefix := l.Prefix()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := LeftoverNamespaces(prefix); len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
}

// TestNetnsLabLinks: a link delays each direction by its latency (a
// TCP handshake across it takes at least twice that), a link with loss
// 1 lets nothing through while the rest of the lab still talks; in each
// link mode this kernel has. Close removes the queues with the
// namespaces.
func TestNetnsLabLinks(t *testing.T) {
	needNetns(t)
	modes := []string{LinkQueue}
	if netemAvailable(t) {
		modes = append(modes, LinkNetem)
	} else {
		t.Log("the kernel has no netem (CONFIG_NET_SCH_NETEM): the netem mode is not tested here")
	}
	const latency = 30 * time.Millisecond
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := NewLab(ctx, 3)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := l.SetLinks(ctx, []LabLink{{A: []int{0}, B: []int{1, 2}, Latency: latency}}, mode); err != nil {
				t.Fatal(err)
			}
			a1, a2 := labListen(t, l, 1), labListen(t, l, 2)
			for _, addr := range []string{a1, a2} {
				rtt, err := l.DialTime(ctx, 0, addr)
				if err != nil {
					t.Fatal(err)
				}
				if rtt < 2*latency {
					t.Errorf("handshake from node 0 to %s across the link took %s, want at least %s", addr, rtt, 2*latency)
				}
			}
			rtt, err := l.DialTime(ctx, 1, a2)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: inside a group %s", mode, rtt)
			if mode == LinkQueue {
				if d, _, _ := l.LinkStats(); d == 0 {
					t.Error("the delay queues released no packet")
				}
			}
			prefix := l.Prefix()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if left, _ := LeftoverNamespaces(prefix); len(left) > 0 {
				t.Errorf("namespaces left after Close: %v", left)
			}
		})
		t.Run(mode+" loss", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := NewLab(ctx, 3)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := l.SetLinks(ctx, []LabLink{{A: []int{0}, B: []int{1}, Loss: 1}}, mode); err != nil {
				t.Fatal(err)
			}
			a1 := labListen(t, l, 1)
			dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err = l.DialTime(dctx, 0, a1)
			dcancel()
			if err == nil {
				t.Error("node 0 reached node 1 across a link that loses every packet")
			}
			if _, err := l.DialTime(ctx, 2, a1); err != nil {
				t.Errorf("node 2, on no link, to node 1: %v", err)
			}
		})
	}
	t.Run("unknown mode", func(t *testing.T) {
		ctx := context.Background()
		l, err := NewLab(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := l.SetLinks(ctx, []LabLink{{A: []int{0}, B: []int{1}}}, "carrier-pigeon"); err == nil || !strings.Contains(err.Error(), "carrier-pigeon") {
			t.Errorf("unknown link mode: %v", err)
		}
	})
}

// labListen listens on node i's address in its namespace, accepting
// and closing until the test ends.
func labListen(t *testing.T, l *Lab, i int) string {
	t.Helper()
	var ln net.Listener
	if err := l.inNS(l.Namespace(i), func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(l.Addr(i), 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// netnsScenario is the scenario the namespace-mode test runs: a brute
// force seen in both groups blocked everywhere; a node SIGKILLed, an
// attack blocked without it, the node restarted and caught up; an
// operator block through the admin API; an attacker seen at one site
// only detected there (its /metrics, read inside its namespace) and
// never blocked.
const netnsScenario = `
name: netns
topology:
  nodes: 4
  groups: {east: [0, 1], west: rest}
  links: [{between: [east, west], latency: 40ms}]
timeline:
  - name: brute force in both groups
    attack: {kind: brute_force, from: 203.0.113.66, nodes: [0, 2]}
  - name: blocked everywhere
    expect:
      committed: 203.0.113.66
      enforced: {indicator: 203.0.113.66, on: all}
      within: 30s
  - kill: 3
  - attack: {kind: brute_force, from: 203.0.113.67, nodes: [1, 2]}
  - name: blocked while node 3 is down
    expect:
      enforced: {indicator: 203.0.113.67, on: [0, 1, 2]}
      within: 30s
  - restart: killed
  - name: node 3 caught up
    expect:
      running: all
      enforced: {indicator: 203.0.113.67, on: all}
      within: 30s
  - operator: {block: 198.51.100.0/24}
  - name: operator block
    expect:
      enforced: {indicator: 198.51.100.0/24, on: all}
      within: 30s
  - name: seen at one site only
    attack: {kind: brute_force, from: 203.0.113.69, nodes: [3]}
  - name: one site is not enough
    expect:
      refused: {metric: meshward_detections_total, on: [3], min: 1}
      never_blocked: [203.0.113.69]
      not_enforced: {indicator: 203.0.113.69, on: all}
      within: 20s
`

// TestNetns runs namespace mode end to end: a scenario (every node a
// meshward agent in its own namespace) whose expectations read the admin
// APIs and the namespaces' kernel sets; then a mesh whose kernel sets the
// test reads itself, with the link latency measured where the kernel has
// netem; and that nothing is left afterwards.
func TestNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agent processes in network namespaces")
	}
	needNetns(t)
	bin := meshwardBinary(t)
	const latency = 40 * time.Millisecond

	t.Run("scenario", func(t *testing.T) {
		s, err := ParseScenario("netns.yaml", []byte(netnsScenario))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var m *NetnsMesh
		var narration bytes.Buffer
		rep, err := RunScenarioNetns(ctx, s, NetnsRunOptions{Binary: bin,
			RunOptions: RunOptions{Dir: t.TempDir(), Narrate: &narration},
			Started:    func(x *NetnsMesh) { m = x }})
		t.Logf("narration:\n%s", narration.String())
		if rep != nil {
			var b bytes.Buffer
			rep.WriteText(&b)
			t.Logf("report:\n%s", b.String())
		}
		if m == nil {
			t.Fatalf("the mesh did not start: %v", err)
		}
		if err != nil {
			for i := range m.Size() {
				t.Logf("node %d agent.log (end):\n%s", i, m.logTail(i, 30))
			}
			t.Fatal(err)
		}
		if len(rep.Expectations) != 10 {
			t.Errorf("%d expectations judged, want 10 (the never_blocked one twice)", len(rep.Expectations))
		}
		// The measurement of the first attacker, from the agents' process
		// records and the kernel sets.
		if rep.Indicator != "203.0.113.66" || len(rep.PerNode) != 4 {
			t.Errorf("measured %q on %d nodes, want 203.0.113.66 on 4", rep.Indicator, len(rep.PerNode))
		}
		for i, n := range rep.PerNode {
			// Node 3 was killed and restarted: what it received before
			// may not be in its records.
			if !n.Enforcing || n.EnforceMs < 0 || n.PropagationMs < 0 && i != 3 || n.Attacked != (i == 0 || i == 2) {
				t.Errorf("node %d measured %+v: want enforcing, received and enforced times, attacked only at nodes 0 and 2", i, n)
			}
		}
		if mem := rep.Memory; mem == nil || len(mem.Processes) != 4 || mem.PeakRSSMB <= 0 {
			t.Errorf("memory %+v: want the 4 agents' peak resident sets", mem)
		}
		if got := len(m.PIDs()); got != 5 {
			t.Errorf("%d agent processes started, want 5 (4 and a restart)", got)
		}
		assertCleanedUp(t, m.Lab.Prefix(), m.PIDs())
	})

	t.Run("kernel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		o := NetnsOptions{Nodes: 3, Binary: bin, Dir: t.TempDir(), Links: []LabLink{{A: []int{0}, B: []int{1, 2}, Latency: latency}}}
		m, err := StartNetns(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		attacker := netip.MustParseAddr("203.0.113.70")
		for _, i := range []int{0, 1} {
			if err := appendFile(m.AuthLog(i), SSHBruteForceLog(m.Site(i), attacker, 12, time.Now())); err != nil {
				t.Fatal(err)
			}
		}
		ind := intel.IndicatorFromAddr(attacker)
		for i := range m.Size() {
			err := Poll(ctx, 50*time.Millisecond, func() (bool, string) {
				set, err := m.Lab.KernelBlocks(i, nft.DefaultTable)
				if err != nil {
					return false, err.Error()
				}
				return set[ind.Value], "the kernel set does not hold it"
			})
			if err != nil {
				t.Fatalf("node %d (namespace %s): %s: %v", i, m.Lab.Namespace(i), attacker, err)
			}
		}
		// Each namespace has its own kernel state: the host's has no
		// meshward table from this run, and a namespace's table is its own.
		if set, err := m.Lab.KernelBlocks(0, "no_such_table"); err != nil || len(set) != 0 {
			t.Errorf("a missing table reads as %v, %v; want empty", set, err)
		}
		// Latency: a TCP handshake from node 0 to node 1 is a round trip
		// across the link, delayed each way.
		rtt, err := m.Lab.DialTime(ctx, 0, m.TCPAddr(1))
		if err != nil {
			t.Fatal(err)
		}
		if rtt < 2*latency {
			t.Errorf("round trip from node 0 to node 1 took %s, want at least twice the link's %s (%s)", rtt, latency, m.Lab.LinkMode())
		}
		t.Logf("round trip across the link %s (latency %s each way, by %s)", rtt, latency, m.Lab.LinkMode())
		// An agent must not die with the thread that asked for it (the
		// kernel sends Pdeathsig when the forking thread ends, and Go ends
		// a thread whose goroutine exits locked, as namespace calls do):
		// node 2 restarted from a goroutine whose thread then ends.
		if err := m.Kill(2); err != nil {
			t.Fatal(err)
		}
		tidc, errc := make(chan int, 1), make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			tidc <- syscall.Gettid()
			errc <- m.Restart(ctx, 2)
		}()
		tid := <-tidc
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		task := fmt.Sprintf("/proc/self/task/%d", tid)
		if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
			_, err := os.Stat(task)
			return errors.Is(err, os.ErrNotExist), "the thread has not ended"
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Client(2).Status(ctx); err != nil || !m.Running(2) {
			t.Errorf("node 2 died with the thread that restarted it: %v (exit: %v)", err, m.exitErr(2))
		}
		prefix, dir := m.Lab.Prefix(), m.Dir()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		assertCleanedUp(t, prefix, m.PIDs())
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("the data directory given in Dir was removed: %v", err)
		}
	})

	t.Run("shipped", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join("scenarios", "netns", "*.yaml"))
		for _, f := range files {
			s, err := LoadScenario(f)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			var narration bytes.Buffer
			var m *NetnsMesh
			rep, err := RunScenarioNetns(ctx, s, NetnsRunOptions{Binary: bin, RunOptions: RunOptions{Dir: t.TempDir(), Narrate: &narration},
				Started: func(x *NetnsMesh) { m = x }})
			cancel()
			t.Logf("%s:\n%s", f, narration.String())
			if err != nil || rep == nil || !rep.Passed {
				t.Fatalf("%s: %v", f, err)
			}
			assertCleanedUp(t, m.Lab.Prefix(), m.PIDs())
		}
	})
}

// TestNetnsShippedScenariosLoad: the shipped namespace-mode scenarios
// decode, and namespace mode accepts every step of them.
func TestNetnsShippedScenariosLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("scenarios", "netns", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario in scenarios/netns: %v", err)
	}
	for _, f := range files {
		s, err := LoadScenario(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := NetnsSupports(s, ""); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if _, err := RunScenario(context.Background(), s, RunOptions{}); !errors.Is(err, ErrLinksInProcess) {
			t.Errorf("%s in process: %v, want ErrLinksInProcess", f, err)
		}
	}
}

// TestNetnsRefusals: what namespace mode cannot do is refused by name
// before anything starts.
func TestNetnsRefusals(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"skew", "name: x\ntopology: {nodes: 2}\ntimeline:\n  - skew: {nodes: [1], by: 1m}\n", "skew"},
		{"rogue", "name: x\ntopology: {nodes: 2}\ntimeline:\n  - rogue: {node: 1, flood: 10}\n", "rogue"},
		{"stranger", "name: x\ntopology: {nodes: 2}\ntimeline:\n  - stranger: {node: 1, protocols: [raft]}\n", "stranger"},
		{"profile", "name: x\ntopology: {nodes: 2, profile: sim}\ntimeline:\n  - expect: {running: all}\n", "profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseScenario("x.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := RunScenarioNetns(context.Background(), s, NetnsRunOptions{Binary: "/nonexistent"})
			if !errors.Is(err, ErrNetnsStep) || !strings.Contains(err.Error(), tc.want) || rep != nil {
				t.Fatalf("got %v, %v; want ErrNetnsStep naming %s", rep, err, tc.want)
			}
		})
	}
}

// TestNetnsAgentFails: an agent that exits at start fails StartNetns
// with its exit and the end of its log, and nothing is left behind.
func TestNetnsAgentFails(t *testing.T) {
	needNetns(t)
	bad := filepath.Join(t.TempDir(), "meshward")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho \"config: data_dir: refused for the test\" >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := LeftoverNamespaces("mwn-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := StartNetns(ctx, NetnsOptions{Nodes: 2, Binary: bad})
	if m != nil || err == nil || !strings.Contains(err.Error(), "exited at start (exit status 3)") || !strings.Contains(err.Error(), "refused for the test") {
		t.Fatalf("got %v, %v; want node 0's exit and its log", m, err)
	}
	after, err := LeftoverNamespaces("mwn-")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) > len(before) {
		t.Errorf("namespaces left after a failed start: %v (before: %v)", after, before)
	}
}

// TestNetnsPreflight: what is missing is named before anything is made.
func TestNetnsPreflight(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no ip, no tc
	err := NetnsPreflight(true)
	switch {
	case os.Geteuid() != 0:
		if !errors.Is(err, ErrNetnsNotRoot) {
			t.Fatalf("as uid %d: %v, want ErrNetnsNotRoot", os.Geteuid(), err)
		}
	case !errors.Is(err, ErrNetnsNoCommand) || !strings.Contains(err.Error(), ": ip "):
		t.Fatalf("without ip: %v, want ErrNetnsNoCommand naming ip", err)
	}
	if _, err := NewLab(context.Background(), 2); err == nil {
		t.Fatal("NewLab made a lab without root or ip")
	}
}

// TestSumSeries reads counters from Prometheus text exposition.
func TestSumSeries(t *testing.T) {
	text := `# HELP meshward_gossip_rejected_total x
# TYPE meshward_gossip_rejected_total counter
meshward_gossip_rejected_total{reason="stale",topic="s"} 3
meshward_gossip_rejected_total{reason="forged",topic="s"} 2
meshward_gossip_rejected_total{reason="stale",topic="t"} 1
meshward_gossip_rejected_totally 100
`
	for _, tc := range []struct {
		reason string
		want   float64
	}{{"stale", 4}, {"", 6}, {"replay", 0}} {
		got, err := sumSeries(strings.NewReader(text), "meshward_gossip_rejected_total", tc.reason)
		if err != nil || got != tc.want {
			t.Errorf("reason %q: %v, %v; want %v", tc.reason, got, err, tc.want)
		}
	}
}
