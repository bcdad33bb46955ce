package testnet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshward/meshward/node"
)

// procsRoleEnv makes the test binary a worker ("worker") or a
// coordinator that prints its workers' pids and runs until killed
// ("coordinator") instead of running the tests.
const procsRoleEnv = "MESHWARD_TESTNET_PROCS_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(procsRoleEnv) {
	case "worker":
		os.Exit(runTestWorker())
	case "coordinator":
		os.Exit(runTestCoordinator())
	}
	os.Exit(m.Run())
}

func runTestWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := ServeWorker(ctx, os.Stdin, os.Stdout, nil); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// testWorkerCommand runs the test binary as a worker.
func testWorkerCommand() *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), procsRoleEnv+"=worker")
	return cmd
}

// runTestCoordinator starts a 6-node mesh over 3 processes in the
// directory MESHWARD_TESTNET_PROCS_DIR and, once both workers report
// progress, prints their pids on a line; it then runs until killed.
func runTestCoordinator() int {
	var once sync.Once
	_, err := RunBruteForce(context.Background(), ScenarioOptions{
		Options: Options{Nodes: 6, Dir: os.Getenv("MESHWARD_TESTNET_PROCS_DIR"), Progress: func(p Progress) {
			if pids := childPids(); len(pids) == 2 && p.Started > splitNodes(6, 3)[0] {
				once.Do(func() { fmt.Println(strings.Trim(fmt.Sprint(pids), "[]")) })
			}
		}},
		Processes: 3, WorkerCommand: testWorkerCommand, Timeout: time.Hour,
	})
	fmt.Fprintln(os.Stderr, "coordinator:", err)
	return 1
}

// childPids lists this process's children, from /proc.
func childPids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(pid); ok && ppid == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// procStat reads a process's parent and state from /proc; ok is false
// when there is no such process.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0], true
}

// alive reports whether pid runs (a zombie does not: it exited and
// waits for a parent to reap it).
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

// A 9-node mesh over three processes runs the brute force end to end,
// the attack written into the logs of nodes in the coordinator and in a
// worker: every node of every process enforces the block, the report
// has every node in order, percentiles over all of them, and each
// process's peak memory; once the run returns, no worker is left.
func TestProcsBruteForceEveryNodeOfEveryProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 9-node mesh over three processes")
	}
	var mu sync.Mutex
	var last Progress
	rep, err := RunBruteForce(context.Background(), ScenarioOptions{
		Options: Options{Nodes: 9, Dir: t.TempDir(), Progress: func(p Progress) {
			mu.Lock()
			last = p
			mu.Unlock()
		}},
		Attacked:  8, // nodes 0-6 run in the coordinator, 7 in the first worker, 8 in the second
		Processes: 3, WorkerCommand: testWorkerCommand, WorkerStderr: testWriter{t}, Timeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.EnforcedOn != 9 || len(rep.PerNode) != 9 {
		t.Fatalf("committed %v, enforced on %d of %d, %d nodes reported: %s", rep.PolicyCommitted, rep.EnforcedOn, rep.Nodes, len(rep.PerNode), rep.Error)
	}
	if !rep.GCHeld {
		t.Errorf("garbage collection was not held off during the attack")
	}
	ids := map[string]bool{}
	for i, n := range rep.PerNode {
		if want := fmt.Sprintf("site-%02d", i); n.Site != want || !n.Enforcing || n.EnforceMs < 0 || n.PropagationMs < 0 || n.CommitMs < 0 {
			t.Errorf("per-node %d: %+v, want %s enforcing with every time", i, n, want)
		}
		if n.Attacked != (i < 8) || n.Detected != (i < 8) {
			t.Errorf("per-node %d: attacked %v, detected %v; want both for nodes 0-7 only", i, n.Attacked, n.Detected)
		}
		if n.Kind == "" || n.CommitToEnforceMs < 0 {
			t.Errorf("per-node %d: kind %q, commit→enforce %v ms; want a kind and a time", i, n.Kind, n.CommitToEnforceMs)
		}
		ids[n.ID] = true
	}
	if len(ids) != 9 {
		t.Errorf("%d distinct node IDs, want 9", len(ids))
	}
	// Nine nodes: seven raft servers (voters, and standbys the leader
	// promotes in its own time) and two edges; what the servers in every
	// process published on the certified topic is summed.
	kinds := map[string]int{}
	for _, n := range rep.PerNode {
		kinds[n.Kind]++
	}
	if kinds["server"] < 1 || kinds["server"]+kinds["standby"] != 7 || kinds["edge"] != 2 || rep.CommitToEnforceByKind["edge"].P50 <= 0 {
		t.Errorf("kinds %v, edges' commit→enforce %+v; want 7 servers and standbys, 2 edges and a time", kinds, rep.CommitToEnforceByKind["edge"])
	}
	if c := rep.Certified; c.Messages == 0 || c.Entries < 9 {
		t.Errorf("certified topic: %+v; want messages carrying at least the nine admissions", c)
	}
	if rep.EnforceMs.Max < 0 || rep.EnforceMs.Max < rep.EnforceMs.P50 {
		t.Errorf("enforcement percentiles %+v", rep.EnforceMs)
	}
	mem := rep.Memory
	if mem == nil || len(mem.Processes) != 3 {
		t.Fatalf("memory %+v, want three processes", mem)
	}
	sum, pids, first := 0.0, map[int]bool{}, 0
	for k, ps := range mem.Processes {
		if want := []int{7, 1, 1}[k]; ps.PeakRSSMB <= 0 || ps.Nodes != want || ps.First != first || ps.PID == 0 {
			t.Errorf("process %d: %+v, want %d nodes from node %d", k, ps, want, first)
		}
		first += ps.Nodes
		sum += ps.PeakRSSMB
		pids[ps.PID] = true
		if k > 0 && alive(ps.PID) {
			t.Errorf("worker %d (pid %d) still runs after the run", k, ps.PID)
		}
	}
	if len(pids) != 3 || pids[os.Getpid()] != true {
		t.Errorf("pids %v: want this process and two others", pids)
	}
	if mem.Nodes != 9 || mem.PeakRSSMB != sum {
		t.Errorf("memory sums %+v, want %.1f MB over 9 nodes", mem, sum)
	}
	mu.Lock()
	defer mu.Unlock()
	if last.Nodes != 9 || last.Started != 9 || last.Joined != 9 || last.Ready != 9 {
		t.Errorf("last progress %+v, want all 9 of every process started, joined and ready", last)
	}
}

// Ending the coordinator's context while the mesh forms ends the run and
// closes every worker: none is left once RunBruteForce returns.
func TestProcsContextEndClosesWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var pids []int
	_, err := RunBruteForce(ctx, ScenarioOptions{
		Options: Options{Nodes: 6, Dir: t.TempDir(), Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			if c := childPids(); len(c) == 2 && p.Started > splitNodes(6, 3)[0] && pids == nil {
				pids = c
				cancel()
			}
		}},
		Processes: 3, WorkerCommand: testWorkerCommand, WorkerStderr: testWriter{t}, Timeout: 3 * time.Minute,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run ended with %v, want it canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pids) != 2 {
		t.Fatalf("workers seen: %v", pids)
	}
	for _, pid := range pids {
		// Close waited for each worker: not even a zombie is left.
		if _, state, ok := procStat(pid); ok {
			t.Errorf("worker pid %d is still there (state %s) after the run returned", pid, state)
		}
	}
}

// A coordinator killed outright (SIGKILL: no Close) leaves no worker
// behind: each sees its input end (and, on Linux, gets SIGTERM), closes
// its nodes and exits.
func TestProcsKilledCoordinatorLeavesNoWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a coordinator and worker processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), procsRoleEnv+"=coordinator", "MESHWARD_TESTNET_PROCS_DIR="+t.TempDir())
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("coordinator printed no worker pids: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("coordinator printed %q", line)
		}
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("coordinator printed %q, want two pids", line)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		for _, pid := range pids {
			if alive(pid) {
				return false, fmt.Sprintf("worker pid %d still runs", pid)
			}
		}
		return true, ""
	}); err != nil {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatal(err)
	}
}

// A worker refuses, by name and counted, what it cannot do, and returns
// when its input ends.
func TestWorkerRefusesBadRequests(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeWorker(context.Background(), inR, outW, nil) }()
	enc, dec := json.NewEncoder(inW), json.NewDecoder(outR)
	ask := func(r workerRequest) workerReply {
		t.Helper()
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		var rep workerReply
		if err := dec.Decode(&rep); err != nil {
			t.Fatal(err)
		}
		if rep.ID != r.ID {
			t.Fatalf("reply to %d: %+v", r.ID, rep)
		}
		return rep
	}
	dir := t.TempDir()
	good := workerStart{First: 1, Count: 2, Nodes: 3, Dir: dir, Join: "/ip4/127.0.0.1/tcp/1/p2p/x", Token: "t"}
	bad := func(f func(*workerStart)) *workerStart { s := good; f(&s); return &s }
	cases := []struct {
		r    workerRequest
		want string
	}{
		{workerRequest{Op: "launch"}, `unknown_op: op "launch"`},
		{workerRequest{Op: opTimelines, Indicator: "203.0.113.66"}, `not_started: op "timelines"`},
		{workerRequest{Op: opReady}, `not_started: op "ready"`},
		{workerRequest{Op: opStart}, "bad_start: start: missing"},
		{workerRequest{Op: opStart, Start: bad(func(s *workerStart) { s.First = 0 })}, "bad_start: first 0"},
		{workerRequest{Op: opStart, Start: bad(func(s *workerStart) { s.Count = 3 })}, "bad_start: count 3: nodes 1 to 3 are not in a mesh of 3"},
		{workerRequest{Op: opStart, Start: bad(func(s *workerStart) { s.Dir = "rel" })}, `bad_start: dir "rel": not an absolute path`},
		{workerRequest{Op: opStart, Start: bad(func(s *workerStart) { s.Dir = filepath.Join(dir, "none") })}, "not a directory"},
		{workerRequest{Op: opStart, Start: bad(func(s *workerStart) { s.Join = "" })}, "bad_start: join: empty"},
		{workerRequest{Op: opStart, Start: bad(func(s *workerStart) { s.Profile = "huge" })}, `bad_start: profile: testnet: profile "huge"`},
	}
	for k, c := range cases {
		c.r.ID = k + 1
		rep := ask(c.r)
		if !strings.Contains(rep.Error, c.want) {
			t.Errorf("%s: error %q, want %q", c.r.Op, rep.Error, c.want)
		}
	}
	// Holding the collector off and releasing it needs no nodes, and is
	// no refusal.
	for k, hold := range []bool{true, false} {
		if c := ask(workerRequest{ID: 97 - k, Op: opGC, Hold: hold}); c.ID != 97-k || c.Error != "" {
			t.Errorf("gc hold %v: %+v", hold, c)
		}
	}
	rep := ask(workerRequest{ID: 99, Op: opMemory})
	if rep.Memory == nil || rep.Memory.PeakRSSMB <= 0 {
		t.Errorf("memory: %+v", rep)
	}
	want := map[string]uint64{refusedUnknownOp: 1, refusedNotStarted: 2, refusedBadStart: 7}
	if fmt.Sprint(rep.Refused) != fmt.Sprint(want) {
		t.Errorf("refused %v, want %v", rep.Refused, want)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Errorf("worker ended with %v at the end of its input", err)
	}
}

// Processes are chosen from the open-files limit: one for a mesh that
// fits in 60% of it, more as the mesh grows or the limit shrinks, and
// never a process whose estimate passes the budget.
func TestChooseProcesses(t *testing.T) {
	for _, c := range []struct {
		nodes int
		soft  uint64
		want  int
	}{
		{5, 1024, 1},
		{300, 20000, 1},
		{1000, 20000, 3},
		{1000, 10000, 6},
		{100, 1024, 6}, // no node is dialed by all: a small limit still holds tens of nodes
	} {
		p, fds := ChooseProcesses(c.nodes, "", c.soft)
		if p != c.want || float64(fds) > float64(c.soft)*fdShare {
			t.Errorf("%d nodes, limit %d: %d processes of up to %d open files, want %d", c.nodes, c.soft, p, fds, c.want)
		}
	}
	// Under the sim profile no node is dialed by all: the founder holds
	// tens of connections at most, and every node past the servers
	// dials SimRandomPeers+SimPeers-1.
	conns := nodeConns(100, mustProfile(t, ProfileSim))
	if conns[0] > 30 || conns[99] != SimRandomPeers+SimPeers-1 || conns[50] < SimRandomPeers+SimPeers-1 {
		t.Errorf("sim connections: node 0 %d, node 50 %d, node 99 %d", conns[0], conns[50], conns[99])
	}
	if c := nodeConns(10, mustProfile(t, ProfileDefault)); c[0] != 9 || c[9] != 9 {
		t.Errorf("default profile connections %v, want 9 each", c)
	}
	for _, c := range []struct {
		nodes, processes int
		want             []int
	}{
		{10, 1, []int{10}},
		{10, 3, []int{7, 2, 1}},
		{9, 3, []int{7, 1, 1}},
		{6, 3, []int{4, 1, 1}},
		{3, 3, []int{1, 1, 1}},
		{1000, 4, []int{7, 331, 331, 331}},
	} {
		if got := splitNodes(c.nodes, c.processes); !slices.Equal(got, c.want) {
			t.Errorf("split %d over %d: %v, want %v", c.nodes, c.processes, got, c.want)
		}
	}
}

func mustProfile(t *testing.T, name string) profile {
	t.Helper()
	p, err := profileFor(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testWriter logs what workers write to their standard error.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// What cannot reach a worker is refused before any process starts: a
// Configure or Clock function, more processes than nodes.
func TestProcsRefusesWhatCannotCross(t *testing.T) {
	for _, c := range []struct {
		o    ScenarioOptions
		want string
	}{
		{ScenarioOptions{Options: Options{Nodes: 4, Configure: func(int, *node.Config) {}}, Processes: 2}, "Options.Configure and Options.Clock cannot reach other processes"},
		{ScenarioOptions{Options: Options{Nodes: 4, Clock: func(int) func() time.Time { return time.Now }}, Processes: 2}, "cannot reach other processes"},
		{ScenarioOptions{Options: Options{Nodes: 4}, Processes: 5}, "processes 5: more than the 4 nodes"},
	} {
		c.o.WorkerCommand = func() *exec.Cmd { t.Fatal("a worker was started"); return nil }
		rep, err := RunBruteForce(context.Background(), c.o)
		if rep != nil || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("report %v, error %v; want %q", rep, err, c.want)
		}
	}
}

func TestGatherTimeoutGrowsWithTheMesh(t *testing.T) {
	for n, want := range map[int]time.Duration{9: 30 * time.Second, 300: 30 * time.Second, 1000: 100 * time.Second} {
		if got := gatherTimeout(n); got != want {
			t.Errorf("gatherTimeout(%d) = %s, want %s", n, got, want)
		}
	}
}
