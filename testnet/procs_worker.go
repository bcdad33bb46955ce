package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// Reasons a worker refuses a request, counted and reported in its
// replies.
const (
	refusedUnknownOp  = "unknown_op"
	refusedBadStart   = "bad_start"
	refusedStarted    = "already_started"
	refusedNotStarted = "not_started"
	refusedBadInd     = "bad_indicator"
	refusedBadIDs     = "bad_ids"
)

// ServeWorker runs a worker: it reads requests from in and writes replies
// and its progress to out (the control protocol of procs_wire.go), runs
// the nodes the start request gives it, and returns once asked to close,
// when in ends (the coordinator died) or when ctx ends, in each case
// after closing its nodes. Its nodes log to logger (nil discards). It
// ignores SIGPIPE (which would end the process at a write to the output
// of a coordinator gone, before its nodes are closed) and writes nothing
// more after a failed write.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer, logger *slog.Logger) error {
	signal.Ignore(syscall.SIGPIPE)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &worker{out: json.NewEncoder(out), logger: logger, refused: map[string]uint64{}, startedCh: make(chan struct{})}
	reqs := make(chan workerRequest)
	readErr := make(chan error, 1)
	go func() {
		// Not joined: it ends when in does, which may be never if the
		// coordinator lives on. It sends nothing once ServeWorker left.
		dec := json.NewDecoder(in)
		for {
			var r workerRequest
			if err := dec.Decode(&r); err != nil {
				readErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	var ops sync.WaitGroup
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		case rerr := <-readErr:
			if !errors.Is(rerr, io.EOF) {
				err = fmt.Errorf("testnet worker: control input: %w", rerr)
			}
			break loop
		case r := <-reqs:
			if r.Op == opClose {
				cancel()
				cerr := w.shutdown(&ops)
				rep := workerReply{ID: r.ID}
				if cerr != nil {
					rep.Error = cerr.Error()
				}
				w.reply(rep)
				return cerr
			}
			ops.Go(func() { w.handle(ctx, r) })
		}
	}
	cancel()
	return errors.Join(err, w.shutdown(&ops))
}

// closeTimeout bounds closing count nodes.
func closeTimeout(count int) time.Duration {
	return 30*time.Second + time.Duration(count)*200*time.Millisecond
}

// shutdown waits for the requests being served (their context ended),
// then closes the nodes; it gives up after closeTimeout, so that a
// worker whose coordinator is gone exits even if a node hangs closing.
func (w *worker) shutdown(ops *sync.WaitGroup) error {
	w.mu.Lock()
	d := closeTimeout(w.count)
	w.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		ops.Wait()
		done <- w.close()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("testnet worker: closing the nodes took over %s: leaving them to the process's exit", d)
	}
}

// worker is the state of a worker process.
type worker struct {
	logger *slog.Logger

	outMu  sync.Mutex
	out    *json.Encoder
	silent atomic.Bool // a write failed: no one reads the output

	mu        sync.Mutex
	m         *Mesh // set by start, closed by close
	first     int   // m's first node's index in the mesh
	count     int   // the nodes m runs
	starting  bool
	startedCh chan struct{}
	refused   map[string]uint64
	progress  func() // stops the progress reports, once the nodes are ready
}

func (w *worker) reply(r workerReply) {
	if w.silent.Load() {
		return
	}
	w.mu.Lock()
	if len(w.refused) > 0 {
		r.Refused = maps.Clone(w.refused)
	}
	w.mu.Unlock()
	w.outMu.Lock()
	defer w.outMu.Unlock()
	if err := w.out.Encode(r); err != nil {
		w.silent.Store(true) // the coordinator is gone: in ends next
	}
}

// refuse counts a refusal for reason and answers r with err.
func (w *worker) refuse(r workerRequest, reason string, err error) {
	w.mu.Lock()
	w.refused[reason]++
	w.mu.Unlock()
	if w.logger != nil {
		w.logger.Warn("testnet worker refused a request", "op", r.Op, "reason", reason, "err", err)
	}
	w.reply(workerReply{ID: r.ID, Error: fmt.Sprintf("%s: %v", reason, err)})
}

func (w *worker) handle(ctx context.Context, r workerRequest) {
	switch r.Op {
	case opStart:
		w.start(ctx, r)
	case opMemory:
		w.mu.Lock()
		ps := ReadProcessStats(w.count)
		ps.First = w.first
		w.mu.Unlock()
		w.reply(workerReply{ID: r.ID, Memory: &ps})
	case opGC:
		if r.Hold {
			holdGC()
		} else {
			releaseGC()
		}
		w.reply(workerReply{ID: r.ID})
	case opReady, opAwait, opTimelines:
		select {
		case <-w.startedCh:
		default:
			w.refuse(r, refusedNotStarted, fmt.Errorf("op %q before the nodes started", r.Op))
			return
		}
		w.nodesOp(ctx, r)
	default:
		w.refuse(r, refusedUnknownOp, fmt.Errorf("op %q: allowed are %s, %s, %s, %s, %s, %s and %s", r.Op, opStart, opReady, opAwait, opTimelines, opMemory, opGC, opClose))
	}
}

// check validates a start request, naming the field at fault.
func (s *workerStart) check() error {
	switch {
	case s.Nodes < 2:
		return fmt.Errorf("nodes %d: a worker's mesh has at least 2 nodes", s.Nodes)
	case s.First < 1:
		return fmt.Errorf("first %d: node 0 founds the mesh in the coordinator", s.First)
	case s.Count < 1 || s.First+s.Count > s.Nodes:
		return fmt.Errorf("count %d: nodes %d to %d are not in a mesh of %d", s.Count, s.First, s.First+s.Count-1, s.Nodes)
	case !filepath.IsAbs(s.Dir):
		return fmt.Errorf("dir %q: not an absolute path", s.Dir)
	case s.Join == "":
		return fmt.Errorf("join: empty (the founder's address)")
	case s.Token == "":
		return fmt.Errorf("token: empty")
	case s.Window < 0:
		return fmt.Errorf("window %d: negative", s.Window)
	}
	if _, err := profileFor(s.Profile); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if fi, err := os.Stat(s.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("dir %q: not a directory", s.Dir)
	}
	return nil
}

// start starts the worker's nodes one after the other as Start does,
// each dialing what the profile picks from the peers given and the
// worker's nodes started before it, and at most Window of them waiting
// to be admitted at once.
func (w *worker) start(ctx context.Context, r workerRequest) {
	s := r.Start
	if s == nil {
		w.refuse(r, refusedBadStart, errors.New("start: missing"))
		return
	}
	if err := s.check(); err != nil {
		w.refuse(r, refusedBadStart, err)
		return
	}
	w.mu.Lock()
	if w.starting {
		w.mu.Unlock()
		w.refuse(r, refusedStarted, errors.New("the nodes are started already"))
		return
	}
	w.starting = true
	prof, _ := profileFor(s.Profile)
	m := &Mesh{opts: Options{Nodes: s.Count, Logger: w.logger, MinNodes: s.MinNodes, LocalBlock: s.LocalBlock, Profile: prof.name}, dir: s.Dir}
	w.m, w.first, w.count = m, s.First, s.Count
	w.mu.Unlock()
	w.progress = w.reportProgress(m)
	nodes, err := w.startNodes(ctx, m, prof, s)
	if err != nil {
		w.progress()
		w.reply(workerReply{ID: r.ID, Error: err.Error()})
		return
	}
	close(w.startedCh)
	w.reply(workerReply{ID: r.ID, Nodes: nodes})
}

func (w *worker) startNodes(ctx context.Context, m *Mesh, prof profile, s *workerStart) ([]workerNode, error) {
	addrs := append([]string{}, s.Peers...)
	var nodes []workerNode
	for k := range s.Count {
		i := s.First + k
		join := s.Join
		if len(s.Peers) >= SimServers {
			join = prof.joinThrough(s.Peers, i) // the servers in turn
		}
		cfg, authLog, err := m.nodeConfig(prof, nodeSpec{Index: i, Peers: prof.dialPeers(addrs), Join: join, Token: s.Token})
		if err != nil {
			return nil, err
		}
		if s.Window > 0 && k >= s.Window {
			if err := waitAdmitted(ctx, m.Nodes[k-s.Window], i-s.Window); err != nil {
				return nil, err
			}
		}
		n, err := m.addNode(ctx, i, cfg, authLog)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, n.Addrs()[0])
		nodes = append(nodes, workerNode{Index: i, Site: n.Site(), ID: n.ID(), Addr: n.Addrs()[0]})
	}
	return nodes, nil
}

// reportProgress sends the worker's formation once a second until the
// returned stop is called, which sends it a last time.
func (w *worker) reportProgress(m *Mesh) (stop func()) {
	m.started = time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	send := func() {
		p := m.formation()
		w.reply(workerReply{Progress: &p})
	}
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				send()
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
		send()
	})
}

// nodesOp answers ready, await and timelines, once the nodes started.
func (w *worker) nodesOp(ctx context.Context, r workerRequest) {
	m, first := w.m, w.first
	switch r.Op {
	case opReady:
		if len(r.IDs) < len(m.Nodes) {
			w.refuse(r, refusedBadIDs, fmt.Errorf("ids: %d, fewer than this worker's %d nodes", len(r.IDs), len(m.Nodes)))
			return
		}
		err := waitNodesReady(ctx, m.Nodes, first, r.IDs)
		rep := workerReply{ID: r.ID}
		if err != nil {
			rep.Error = err.Error()
		} else {
			w.progress()
			p := m.formation()
			rep.Progress = &p
		}
		w.reply(rep)
	case opAwait, opTimelines:
		ind, err := intel.ParseIndicator(r.Indicator)
		if err != nil {
			w.refuse(r, refusedBadInd, fmt.Errorf("indicator %q: %w", r.Indicator, err))
			return
		}
		if r.Op == opTimelines {
			nts := meshTimelines(m, ind)
			for k := range nts {
				nts[k].Index += first
			}
			w.reply(workerReply{ID: r.ID, Timelines: nts})
			return
		}
		rep := workerReply{ID: r.ID}
		if err := awaitEnforced(ctx, m.Nodes, first, ind); err != nil {
			rep.Error = err.Error()
		}
		w.reply(rep)
	}
}

// close closes the worker's nodes, if it started any.
func (w *worker) close() error {
	if w.progress != nil {
		w.progress()
	}
	w.mu.Lock()
	m := w.m
	w.m = nil
	w.mu.Unlock()
	if m == nil {
		return nil
	}
	// Closing a node mostly waits (Raft, the host, the store): close
	// several at once, or a worker of hundreds takes minutes.
	errs := make([]error, len(m.Nodes))
	sem := make(chan struct{}, closeParallel)
	var wg sync.WaitGroup
	for k := range m.Nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := m.closeNode(k); err != nil {
				errs[k] = fmt.Errorf("close node %d: %w", w.first+k, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testnet worker: %w", err)
	}
	return nil
}

// closeParallel is how many nodes a worker closes at once.
const closeParallel = 16

// waitNodesReady waits until each of nodes (the first being node first
// of the mesh) has every one of ids on its roster and at least one
// gossip peer. The nodes found ready are not looked at again: during
// formation a roster only grows.
func waitNodesReady(ctx context.Context, nodes []*node.Node, first int, ids []string) error {
	k, j := 0, 0 // node k has ids[:j] on its roster
	return Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for ; k < len(nodes); k, j = k+1, 0 {
			n := nodes[k]
			for ; j < len(ids); j++ {
				if !n.Consensus().IsMember(ids[j]) {
					return false, fmt.Sprintf("node %d does not yet have %s on its roster", first+k, ids[j])
				}
			}
			if len(ids) > 1 && len(n.Gossip().Peers()) < 1 {
				return false, fmt.Sprintf("node %d has no gossip peer", first+k)
			}
		}
		return true, ""
	})
}

// awaitEnforced waits until each of nodes enforces a mesh-wide block of
// ind.
func awaitEnforced(ctx context.Context, nodes []*node.Node, first int, ind intel.Indicator) error {
	return Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		for k, n := range nodes {
			tl, _ := n.Timeline(ind)
			if tl.MeshEnforced().IsZero() || !n.Enforcing(ind) {
				return false, fmt.Sprintf("node %d (%s) does not yet enforce a mesh-wide block of %s", first+k, n.Site(), ind.Value)
			}
		}
		return true, ""
	})
}
