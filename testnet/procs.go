package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
)

// A mesh spread over processes. The coordinator (the process calling
// RunBruteForce with Processes > 1) runs the first nodes: the founder
// and the nodes that join first, which become the servers
// (coordinatorNodes). Once those are admitted it starts Processes-1
// workers (WorkerCommand), each running a contiguous share of the
// others, built as Start builds
// them (nodeConfig) and joining through the founder with the mesh's join
// token. Each process bounds its own nodes waiting to be admitted to its
// part of the profile's join window. The coordinator speaks to each
// worker over the worker's standard input and output (procs_wire.go);
// a worker closes its nodes and exits when asked, when its input ends
// (the coordinator died or closed it) and, on Linux, when the
// coordinator's thread that started it dies (SIGTERM as parent-death
// signal).

// procMesh is a mesh spread over processes, seen from the coordinator.
type procMesh struct {
	m     *Mesh // the coordinator's own nodes, 0 to local-1
	local int
	nodes int // in the mesh
	// workers are set while the mesh starts, under mu, and read
	// without it once started.
	mu      sync.Mutex
	workers []*workerProc
	// sites are every node's site, by index.
	sites []string
	// stopProgress ends the progress display; stopWatch the watch that
	// closes the workers' input when the run's life ends.
	stopProgress, stopWatch func()
}

// workerProc is one worker process.
type workerProc struct {
	k            int // 1 to Processes-1
	first, count int
	cmd          *exec.Cmd
	stdin        io.WriteCloser
	stderr       *tail
	ids          []string // its nodes' IDs, once started

	encMu sync.Mutex
	enc   *json.Encoder

	mu       sync.Mutex
	next     int
	pending  map[int]chan workerReply
	progress Progress
	readErr  error
	done     chan struct{} // closed when the worker's output ended
	exited   chan struct{} // closed once the process was waited for
	waitErr  error
	closeIn  sync.Once
}

func (w *workerProc) String() string {
	return fmt.Sprintf("worker %d (nodes %d-%d, pid %d)", w.k, w.first, w.first+w.count-1, w.cmd.Process.Pid)
}

// coordinatorNodes is how many nodes the coordinator runs itself: the
// founder and the nodes that join first, which become the voters and
// the standbys. Nothing else runs beside them, so that the servers,
// which every join and every commit waits on, are not starved of CPU by
// the edges (Raft votes timed out and elections churned with a third
// of a 300-node mesh beside them).
const coordinatorNodes = SimVoters + consensus.DefaultStandbys

// splitNodes shares nodes between processes in contiguous slices: the
// coordinator (the first) runs coordinatorNodes of them, leaving at
// least one to each worker, and the workers share the others evenly,
// the first ones one more when they do not divide evenly. One process
// runs them all.
func splitNodes(nodes, processes int) []int {
	if processes <= 1 {
		return []int{nodes}
	}
	counts := make([]int, processes)
	counts[0] = max(1, min(coordinatorNodes, nodes-(processes-1)))
	rest, workers := nodes-counts[0], processes-1
	for k := 1; k < processes; k++ {
		counts[k] = rest / workers
		if k-1 < rest%workers {
			counts[k]++
		}
	}
	return counts
}

// nodeDataDir is node i's data directory under the mesh's directory.
func nodeDataDir(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("node-%02d", i)) }

// startProcs starts a mesh of o.Nodes over o.Processes processes and
// returns once every node has every node on its roster and a gossip
// peer, or ctx ends. life bounds the workers' lives beyond Close: when
// it ends, their input is closed and they exit.
func startProcs(ctx, life context.Context, o ScenarioOptions) (_ *procMesh, err error) {
	opts := o.Options
	if opts.Nodes == 0 {
		opts.Nodes = 5
	}
	if opts.MinNodes == 0 {
		opts.MinNodes = 2
	}
	switch {
	case o.Processes > opts.Nodes:
		return nil, fmt.Errorf("testnet: processes %d: more than the %d nodes", o.Processes, opts.Nodes)
	case opts.Configure != nil || opts.Clock != nil:
		return nil, errors.New("testnet: processes: Options.Configure and Options.Clock cannot reach other processes; run in one process")
	}
	if opts.Profile == "" && opts.Nodes > SimProfileAbove {
		opts.Profile = ProfileSim
	}
	prof, err := profileFor(opts.Profile)
	if err != nil {
		return nil, err
	}
	opts.Profile = prof.name
	progress := opts.Progress
	opts.Progress = nil
	counts := splitNodes(opts.Nodes, o.Processes)
	local := counts[0]
	m := &Mesh{opts: opts, dir: opts.Dir}
	if m.dir == "" {
		if m.dir, err = os.MkdirTemp("", "meshward-testnet-"); err != nil {
			return nil, fmt.Errorf("testnet: temp dir: %w", err)
		}
		m.tempDir = true
	}
	pm := &procMesh{m: m, local: local, nodes: opts.Nodes, sites: make([]string, opts.Nodes), stopProgress: func() {}, stopWatch: func() {}}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (%s)", err, pm.formationSummary())
			pm.Close()
		}
	}()
	pm.stopProgress = pm.startProgress(progress)
	pm.stopWatch = pm.watch(life)
	if m.operator, err = newOperatorKey(); err != nil {
		return nil, err
	}
	// The workers' nodes join at the same time: each worker may have
	// its part of the profile's window waiting.
	window := prof.joinWindow
	if window > 0 {
		window = max(1, window/(o.Processes-1))
	}
	// The workers start once the coordinator's nodes, the servers to be,
	// are admitted.
	servers := local
	starts := make(chan error, o.Processes-1)
	token := ""
	var addrs []string
	for i := range local {
		s := nodeSpec{Index: i, Peers: prof.dialPeers(addrs), Token: token}
		if i == 0 {
			s.Operator = operatorKeyText(m.operator)
		} else {
			s.Join = m.Nodes[0].Addrs()[0]
		}
		cfg, authLog, err := m.nodeConfig(prof, s)
		if err != nil {
			return nil, err
		}
		if window > 0 && i >= window {
			if err := waitAdmitted(ctx, m.Nodes[i-window], i-window); err != nil {
				return nil, err
			}
		}
		n, err := m.addNode(ctx, i, cfg, authLog)
		if err != nil {
			return nil, err
		}
		pm.sites[i] = n.Site()
		addrs = append(addrs, n.Addrs()[0])
		if i == 0 {
			if token, err = m.createJoinToken(ctx, opts.Nodes-1); err != nil {
				return nil, err
			}
		}
		if i == servers-1 {
			for j := range servers {
				if err := waitAdmitted(ctx, m.Nodes[j], j); err != nil {
					return nil, err
				}
			}
			first := local
			for k, c := range counts[1:] {
				w, err := launchWorker(o, k+1, first, c)
				if err != nil {
					return nil, err
				}
				pm.mu.Lock()
				pm.workers = append(pm.workers, w)
				pm.mu.Unlock()
				spec := &workerStart{First: first, Count: c, Nodes: opts.Nodes, Dir: m.dir, Profile: prof.name,
					MinNodes: opts.MinNodes, LocalBlock: opts.LocalBlock, Join: m.Nodes[0].Addrs()[0], Token: token,
					Peers: slices.Clone(addrs), Window: window}
				go func() { starts <- pm.startWorker(ctx, w, spec) }()
				first += c
			}
		}
	}
	var errs []error
	for range pm.workers {
		errs = append(errs, <-starts)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ids := make([]string, 0, opts.Nodes)
	for _, n := range m.Nodes {
		ids = append(ids, n.ID())
	}
	for _, w := range pm.workers {
		ids = append(ids, w.ids...)
	}
	ready := make(chan error, len(pm.workers))
	for _, w := range pm.workers {
		go func() {
			_, err := w.call(ctx, workerRequest{Op: opReady, IDs: ids})
			ready <- err
		}()
	}
	errs = []error{waitNodesReady(ctx, m.Nodes, 0, ids)}
	for range pm.workers {
		errs = append(errs, <-ready)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("testnet: mesh not ready: %w", err)
	}
	pm.stopProgress()
	return pm, nil
}

// startWorker asks w to start its nodes and checks its answer: exactly
// the nodes asked for, in order.
func (pm *procMesh) startWorker(ctx context.Context, w *workerProc, spec *workerStart) error {
	r, err := w.call(ctx, workerRequest{Op: opStart, Start: spec})
	if err != nil {
		return err
	}
	if len(r.Nodes) != spec.Count {
		return fmt.Errorf("testnet: %s answered %d nodes started, not %d", w, len(r.Nodes), spec.Count)
	}
	ids := make([]string, len(r.Nodes))
	for k, n := range r.Nodes {
		if n.Index != spec.First+k || n.ID == "" {
			return fmt.Errorf("testnet: %s answered node %d (id %q) in place of node %d", w, n.Index, n.ID, spec.First+k)
		}
		pm.sites[n.Index] = n.Site
		ids[k] = n.ID
	}
	w.ids = ids
	return nil
}

// launchWorker starts worker k's process, for the nodes first to
// first+count-1.
func launchWorker(o ScenarioOptions, k, first, count int) (*workerProc, error) {
	var cmd *exec.Cmd
	if o.WorkerCommand != nil {
		cmd = o.WorkerCommand()
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("testnet: worker command: %w", err)
		}
		cmd = exec.Command(exe, WorkerArgs...)
	}
	setParentDeathSignal(cmd)
	w := &workerProc{k: k, first: first, count: count, cmd: cmd, stderr: &tail{max: 8 << 10},
		pending: map[int]chan workerReply{}, done: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	if o.WorkerStderr != nil {
		cmd.Stderr = io.MultiWriter(w.stderr, o.WorkerStderr)
	}
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("testnet: worker %d: %w", k, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("testnet: worker %d: %w", k, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: start worker %d (%s): %w", k, cmd.Path, err)
	}
	w.enc = json.NewEncoder(w.stdin)
	go w.read(stdout)
	go func() {
		<-w.done // Wait closes stdout: read it to its end first
		w.waitErr = w.cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// read delivers the worker's replies to their callers and keeps its
// progress, until its output ends or does not decode.
func (w *workerProc) read(stdout io.Reader) {
	dec := json.NewDecoder(stdout)
	var err error
	for {
		var r workerReply
		if err = dec.Decode(&r); err != nil {
			break
		}
		w.mu.Lock()
		if r.Progress != nil {
			w.progress = *r.Progress
		}
		if ch, ok := w.pending[r.ID]; ok && r.ID != 0 {
			delete(w.pending, r.ID)
			ch <- r
		}
		// A reply to a call given up on (its context ended) is dropped.
		w.mu.Unlock()
	}
	if errors.Is(err, io.EOF) {
		err = nil
	} else {
		err = fmt.Errorf("control output does not decode: %w", err)
		io.Copy(io.Discard, stdout) // let the process end
	}
	w.mu.Lock()
	w.readErr = err
	w.mu.Unlock()
	close(w.done)
}

// call sends r to the worker and waits for its reply, for ctx to end or
// for the worker to exit.
func (w *workerProc) call(ctx context.Context, r workerRequest) (workerReply, error) {
	ch := make(chan workerReply, 1)
	w.mu.Lock()
	w.next++
	r.ID = w.next
	w.pending[r.ID] = ch
	w.mu.Unlock()
	forget := func() {
		w.mu.Lock()
		delete(w.pending, r.ID)
		w.mu.Unlock()
	}
	w.encMu.Lock()
	err := w.enc.Encode(r)
	w.encMu.Unlock()
	if err != nil {
		forget()
		return workerReply{}, fmt.Errorf("testnet: %s: send %s: %w%s", w, r.Op, err, w.lastWords())
	}
	select {
	case rep := <-ch:
		if rep.Error != "" {
			return rep, fmt.Errorf("testnet: %s: %s: %s", w, r.Op, rep.Error)
		}
		return rep, nil
	case <-w.done:
		select {
		case rep := <-ch:
			if rep.Error != "" {
				return rep, fmt.Errorf("testnet: %s: %s: %s", w, r.Op, rep.Error)
			}
			return rep, nil
		default:
		}
		forget()
		w.mu.Lock()
		rerr := w.readErr
		w.mu.Unlock()
		if rerr == nil {
			rerr = errors.New("exited")
		}
		return workerReply{}, fmt.Errorf("testnet: %s: %s: %w%s", w, r.Op, rerr, w.lastWords())
	case <-ctx.Done():
		forget()
		return workerReply{}, fmt.Errorf("testnet: %s: %s: %w", w, r.Op, ctx.Err())
	}
}

// lastWords are the last lines of the worker's standard error, if any.
func (w *workerProc) lastWords() string {
	if s := w.stderr.String(); s != "" {
		return "; its last words:\n" + s
	}
	return ""
}

// closeInput closes the worker's standard input: it closes its nodes and
// exits.
func (w *workerProc) closeInput() { w.closeIn.Do(func() { w.stdin.Close() }) }

// close asks the worker to close its nodes and waits for it to exit; a
// worker that does not within the timeout is killed.
func (w *workerProc) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := w.call(ctx, workerRequest{Op: opClose})
	w.closeInput()
	select {
	case <-w.exited:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("testnet: %s did not exit within %s: killed", w, timeout))
		w.cmd.Process.Kill()
		<-w.exited
	}
	if w.waitErr != nil && err == nil {
		err = fmt.Errorf("testnet: %s: %w%s", w, w.waitErr, w.lastWords())
	}
	return err
}

// watch closes every worker's input once life ends, until the returned
// stop is called.
func (pm *procMesh) watch(life context.Context) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-done:
		case <-life.Done():
			for _, w := range pm.workerList() {
				w.closeInput()
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}

// workerList returns the workers launched so far.
func (pm *procMesh) workerList() []*workerProc {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return slices.Clone(pm.workers)
}

// Close closes the workers (each closing its nodes), then the
// coordinator's nodes, and removes a temporary mesh directory.
func (pm *procMesh) Close() error {
	pm.stopProgress()
	pm.stopWatch()
	ws := pm.workerList()
	errs := make([]error, len(ws)+1)
	var wg sync.WaitGroup
	for k, w := range ws {
		// A worker gives up closing after closeTimeout: give it a
		// little more before killing it.
		wg.Go(func() { errs[k] = w.close(closeTimeout(w.count) + 10*time.Second) })
	}
	wg.Wait()
	errs[len(ws)] = pm.m.Close()
	return errors.Join(errs...)
}

// pids returns the workers' process IDs.
func (pm *procMesh) pids() []int {
	var pids []int
	for _, w := range pm.workerList() {
		pids = append(pids, w.cmd.Process.Pid)
	}
	return pids
}

// startProgress reports the formation of every process's nodes, summed,
// to report once a second, from its own goroutine, until the returned
// stop is called, which reports a last time.
func (pm *procMesh) startProgress(report func(Progress)) (stop func()) {
	pm.m.started = time.Now()
	if report == nil {
		return func() {}
	}
	sum := func() Progress {
		p := pm.m.formation()
		p.Nodes = pm.nodes
		for _, w := range pm.workerList() {
			w.mu.Lock()
			wp := w.progress
			w.mu.Unlock()
			p.Started += wp.Started
			p.Joined += wp.Joined
			p.Ready += wp.Ready
		}
		return p
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report(sum())
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
		report(sum())
	})
}

// formationSummary says how far each process's nodes formed, as last
// reported: which process holds the nodes that did not join.
func (pm *procMesh) formationSummary() string {
	p := pm.m.formation()
	s := fmt.Sprintf("coordinator (nodes 0-%d): %d started, %d joined, %d ready", pm.local-1, p.Started, p.Joined, p.Ready)
	for _, w := range pm.workerList() {
		w.mu.Lock()
		wp := w.progress
		w.mu.Unlock()
		s += fmt.Sprintf("; %s: %d started, %d joined, %d ready", w, wp.Started, wp.Joined, wp.Ready)
	}
	return s
}

// injectSSHBruteForce appends the attack's lines to node i's auth.log,
// wherever the node runs: all processes share the mesh's directory.
func (pm *procMesh) injectSSHBruteForce(i int, attacker netip.Addr, failures int) error {
	if i < 0 || i >= pm.nodes {
		return fmt.Errorf("testnet: no node %d", i)
	}
	if i < len(pm.m.Nodes) {
		return pm.m.InjectSSHBruteForce(i, attacker, failures)
	}
	f, err := os.OpenFile(filepath.Join(nodeDataDir(pm.m.dir, i), "auth.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testnet: node %d: open auth.log: %w", i, err)
	}
	defer f.Close()
	if _, err := f.Write(SSHBruteForceLog(pm.sites[i], attacker, failures, time.Now())); err != nil {
		return fmt.Errorf("testnet: node %d: write auth.log: %w", i, err)
	}
	return nil
}

// awaitEnforced waits until every node of every process enforces a
// mesh-wide block of ind.
func (pm *procMesh) awaitEnforced(ctx context.Context, ind intel.Indicator) error {
	errc := make(chan error, len(pm.workers))
	for _, w := range pm.workers {
		go func() {
			_, err := w.call(ctx, workerRequest{Op: opAwait, Indicator: ind.String()})
			errc <- err
		}()
	}
	errs := []error{awaitEnforced(ctx, pm.m.Nodes, 0, ind)}
	for range pm.workers {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

// timelines gathers every node's timeline of ind, in the order of the
// nodes. The nodes of a worker that does not answer are missing, and
// the error says which.
func (pm *procMesh) timelines(ctx context.Context, ind intel.Indicator) ([]NodeTimeline, error) {
	type answer struct {
		nts []NodeTimeline
		err error
	}
	answers := make([]answer, len(pm.workers))
	var wg sync.WaitGroup
	for k, w := range pm.workers {
		wg.Go(func() {
			r, err := w.call(ctx, workerRequest{Op: opTimelines, Indicator: ind.String()})
			if err == nil {
				err = checkTimelines(w, r.Timelines)
			}
			answers[k] = answer{r.Timelines, err}
		})
	}
	all := meshTimelines(pm.m, ind)
	wg.Wait()
	var errs []error
	for _, a := range answers {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		all = append(all, a.nts...)
	}
	for k := range all {
		// Times crossed processes as wall-clock readings: compare all
		// as such.
		tl := &all[k].Timeline
		tl.Detected, tl.Received, tl.Committed, tl.Enforced = tl.Detected.Round(0), tl.Received.Round(0), tl.Committed.Round(0), tl.Enforced.Round(0)
	}
	return all, errors.Join(errs...)
}

// checkTimelines checks that a worker answered one timeline for each of
// its nodes, in order.
func checkTimelines(w *workerProc, nts []NodeTimeline) error {
	if len(nts) != w.count {
		return fmt.Errorf("testnet: %s answered %d timelines, not %d", w, len(nts), w.count)
	}
	for k, nt := range nts {
		if nt.Index != w.first+k {
			return fmt.Errorf("testnet: %s answered node %d's timeline in place of node %d's", w, nt.Index, w.first+k)
		}
	}
	return nil
}

// memory returns the peak resident sets of the coordinator and of every
// worker that answers, and their sum.
func (pm *procMesh) memory(ctx context.Context) (ProcessStats, error) {
	own := ReadProcessStats(len(pm.m.Nodes))
	sum := ProcessStats{Nodes: pm.nodes, PID: own.PID, PeakRSSMB: own.PeakRSSMB, Processes: []ProcessStats{own}}
	var errs []error
	for _, w := range pm.workers {
		r, err := w.call(ctx, workerRequest{Op: opMemory})
		if err == nil && r.Memory == nil {
			err = fmt.Errorf("testnet: %s answered no memory figures", w)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps := *r.Memory
		ps.Processes = nil
		sum.PeakRSSMB += ps.PeakRSSMB
		sum.Processes = append(sum.Processes, ps)
	}
	if pm.nodes > 0 {
		sum.PeakRSSPerNodeMB = sum.PeakRSSMB / float64(pm.nodes)
	}
	return sum, errors.Join(errs...)
}

// gc holds the garbage collector of every process of the mesh off, or
// releases it (gchold.go): this one's, and each worker's (opGC).
func (pm *procMesh) gc(ctx context.Context, hold bool) error {
	if hold {
		holdGC()
	} else {
		releaseGC()
	}
	errs := make(chan error, len(pm.workers))
	for _, w := range pm.workers {
		go func() {
			_, err := w.call(ctx, workerRequest{Op: opGC, Hold: hold})
			errs <- err
		}()
	}
	var all []error
	for range pm.workers {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// runBruteForceProcs is RunBruteForce over o.Processes processes.
func runBruteForceProcs(ctx context.Context, o ScenarioOptions) (*Report, error) {
	run, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t0 := time.Now()
	pm, err := startProcs(run, ctx, o)
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	if o.Attacked > pm.nodes {
		return nil, fmt.Errorf("testnet: %d attacked nodes but only %d nodes", o.Attacked, pm.nodes)
	}
	ind := intel.IndicatorFromAddr(o.Attacker)
	rep := &Report{Nodes: pm.nodes, Attacked: o.Attacked, Indicator: ind.Value,
		PolicyID: intel.PolicyID(intel.ActionBlock, ind), StartupMs: ms(time.Since(t0))}
	rep.SettleMs = ms(settleMesh(run, pm.nodes))
	if err := pm.gc(run, true); err != nil {
		if run.Err() != nil {
			err = run.Err() // the workers were closed for it
		}
		return nil, fmt.Errorf("testnet: hold the garbage collectors off: %w", err)
	}
	released := false
	release := func() error {
		if released {
			return nil
		}
		released = true
		return pm.gc(context.WithoutCancel(run), false)
	}
	defer func() { _ = release() }() // the early returns
	rep.GCHeld = true
	rep.linesWritten = time.Now().Round(0)
	cpu := startCPU(append([]int{os.Getpid()}, pm.pids()...))
	for i := range o.Attacked {
		if err := pm.injectSSHBruteForce(i, o.Attacker, o.Failures); err != nil {
			return nil, err
		}
	}
	werr := pm.awaitEnforced(run, ind)
	rep.AttackCPUMs = cpu.ms()
	if err := release(); err != nil {
		werr = errors.Join(werr, fmt.Errorf("testnet: release the garbage collectors: %w", err))
	}
	// The figures are gathered even when the run's time is up.
	gather, cancelGather := context.WithTimeout(context.WithoutCancel(ctx), gatherTimeout(pm.nodes))
	defer cancelGather()
	nts, terr := pm.timelines(gather, ind)
	rep.fill(nts, o.Attacked)
	rep.PolicyCommitted = policyCommitted(pm.m.Nodes[0], rep.PolicyID)
	mem, merr := pm.memory(gather)
	rep.Memory = &mem
	if err := errors.Join(werr, terr); err != nil {
		rep.Error = err.Error()
		return rep, fmt.Errorf("testnet: mesh did not converge: %w", err)
	}
	if merr != nil {
		rep.Error = merr.Error()
		return rep, merr
	}
	return rep, nil
}

// gatherTimeout bounds how long the figures of a run of n nodes are
// gathered from the workers: half a minute, and a tenth of a second a
// node beyond 300. A worker of a just-formed 1,000-node mesh, busy with
// its 500 nodes' gossip, did not answer within 30 s, and the report lost
// every edge's times.
func gatherTimeout(n int) time.Duration {
	return 30*time.Second + time.Duration(max(0, n-300))*100*time.Millisecond
}
