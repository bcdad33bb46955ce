//go:build linux

package testnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/responders/nft"
)

// NetnsOptions configure a namespace-mode mesh.
type NetnsOptions struct {
	// Nodes is the mesh's size (default 5).
	Nodes int
	// Binary is the meshward binary each node runs (`agent --config`);
	// default: this process's executable.
	Binary string
	// Dir holds the nodes' data directories; empty means a temporary
	// directory that Close removes.
	Dir string
	// MinNodes is the corroboration threshold k (default 2).
	MinNodes int
	// LocalBlock lets detecting nodes block at once.
	LocalBlock bool
	// Links are latency and loss between sets of nodes; LinkMode says
	// how (Lab.SetLinks: "" for netem where the kernel has it, else the
	// lab's NFQUEUE delay).
	Links    []LabLink
	LinkMode string
	// Configure may change node i's configuration (a YAML mapping, as
	// written to its file) before it is written.
	Configure func(i int, cfg map[string]any)
}

// NetnsMesh is a mesh of real `meshward agent` processes, each in its
// own network namespace of a Lab, enforcing with nftables in its
// namespace's kernel. Node 0 founds the mesh with the run's operator key;
// the others join through it with a join token the operator creates.
type NetnsMesh struct {
	Lab *Lab

	opts     NetnsOptions
	dir      string
	tempDir  bool
	operator ed25519.PrivateKey
	meshID   string
	// ids are the nodes' peer IDs; cfgPaths their config files.
	ids      []string
	cfgPaths []string
	clients  []*admin.Client

	// spawnReq feeds the spawner thread (spawn).
	spawnOnce sync.Once
	spawnReq  chan spawnReq
	spawnDone chan struct{}

	mu          sync.Mutex
	spawnClosed bool         // Close ended the spawner
	procs       []*agentProc // nil: not running
	pids        []int        // every agent process started
}

// agentProc is one running agent and its reaper.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process was reaped
	err  error         // its exit, after done
}

// agentPort is every node's libp2p port (each has its own namespace).
const agentPort = 7946

// StartNetns makes the lab, starts node 0, creates a join token for the
// others through its admin API and starts them one by one, each joining
// through node 0. It returns when every node is on every node's roster
// and has a gossip peer. On error everything made is removed.
func StartNetns(ctx context.Context, o NetnsOptions) (_ *NetnsMesh, err error) {
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.MinNodes == 0 {
		o.MinNodes = 2
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("testnet: the meshward binary: %w", err)
		}
	}
	if err := NetnsPreflight(len(o.Links) > 0 && o.LinkMode == LinkNetem); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Binary); err != nil {
		return nil, fmt.Errorf("testnet: the meshward binary the agents run: %w", err)
	}
	m := &NetnsMesh{opts: o, dir: o.Dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()
	if m.dir == "" {
		if m.dir, err = os.MkdirTemp("", "meshward-netns-"); err != nil {
			return nil, fmt.Errorf("testnet: temp dir: %w", err)
		}
		m.tempDir = true
	}
	if m.Lab, err = NewLab(ctx, o.Nodes); err != nil {
		return nil, err
	}
	if err := m.Lab.SetLinks(ctx, o.Links, o.LinkMode); err != nil {
		return nil, err
	}
	if m.operator, err = newOperatorKey(); err != nil {
		return nil, err
	}
	m.procs = make([]*agentProc, o.Nodes)
	m.ids = make([]string, o.Nodes)
	m.clients = make([]*admin.Client, o.Nodes)
	token := ""
	for i := range o.Nodes {
		if err := m.writeConfig(i, token); err != nil {
			return nil, err
		}
		if err := m.start(i); err != nil {
			return nil, err
		}
		if err := m.waitUp(ctx, i); err != nil {
			return nil, err
		}
		if i == 0 && o.Nodes > 1 {
			if token, err = m.createJoinToken(ctx, o.Nodes-1); err != nil {
				return nil, err
			}
		}
	}
	if err := m.WaitReady(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *NetnsMesh) nodeDir(i int) string { return filepath.Join(m.dir, fmt.Sprintf("node-%02d", i)) }

// AuthLog is node i's auth.log, which its detectors follow.
func (m *NetnsMesh) AuthLog(i int) string { return filepath.Join(m.nodeDir(i), "auth.log") }

// Site is node i's site name.
func (m *NetnsMesh) Site(i int) string { return fmt.Sprintf("site-%02d", i) }

// Size is the number of nodes.
func (m *NetnsMesh) Size() int { return len(m.procs) }

// Client is node i's admin API client (its Unix socket).
func (m *NetnsMesh) Client(i int) *admin.Client { return m.clients[i] }

// ID is node i's peer ID.
func (m *NetnsMesh) ID(i int) string { return m.ids[i] }

// Dir is the directory holding the nodes' data directories.
func (m *NetnsMesh) Dir() string { return m.dir }

// TCPAddr is node i's libp2p TCP address (host:port) in the lab.
func (m *NetnsMesh) TCPAddr(i int) string {
	return fmt.Sprintf("%s:%d", m.Lab.Addr(i), agentPort)
}

func (m *NetnsMesh) p2pAddr(i int) string {
	return fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", m.Lab.Addr(i), agentPort, m.ids[i])
}

// writeConfig writes node i's configuration file, checked with the
// agent's own parser first.
func (m *NetnsMesh) writeConfig(i int, token string) error {
	dir := m.nodeDir(i)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if err := os.WriteFile(m.AuthLog(i), nil, 0o600); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	a := m.Lab.Addr(i)
	cons := map[string]any{}
	if i == 0 {
		cons["bootstrap"] = true
		cons["bootstrap_operators"] = []string{operatorKeyText(m.operator)}
	} else {
		cons["join"] = []string{m.p2pAddr(0)}
		cons["join_token"] = token
	}
	var peers []string
	for j := range i {
		peers = append(peers, m.p2pAddr(j))
	}
	cfg := map[string]any{
		"data_dir":  dir,
		"site":      m.Site(i),
		"listen":    []string{fmt.Sprintf("/ip4/%s/tcp/%d", a, agentPort), fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", a, agentPort)},
		"peers":     peers,
		"protected": []string{LabPrefix.String()},
		"consensus": cons,
		"corroboration": map[string]any{
			"min_nodes": m.opts.MinNodes,
		},
		"local_block": map[string]any{"enabled": m.opts.LocalBlock},
		"detectors": map[string]any{
			"paths": []string{m.AuthLog(i)}, "from_start": true, "poll_interval": "20ms",
		},
		"responders": map[string]any{
			"dry_run": false, "resync": "5s",
			"nftables": map[string]any{"enabled": true, "table": nft.DefaultTable},
		},
		"log_level": "info",
	}
	if m.opts.Configure != nil {
		m.opts.Configure(i, cfg)
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("testnet: node %d config: %w", i, err)
	}
	if _, err := node.ParseConfig(b); err != nil {
		return fmt.Errorf("testnet: node %d config: %w", i, err)
	}
	p := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if len(m.cfgPaths) <= i {
		m.cfgPaths = append(m.cfgPaths, p)
	}
	return nil
}

// start runs node i's agent in its namespace: `ip netns exec NS meshward
// agent --config FILE` (ip execs the agent, so the process is the
// agent's). Its output goes to agent.log in its data directory.
func (m *NetnsMesh) start(i int) error {
	m.mu.Lock()
	running := m.procs[i] != nil
	m.mu.Unlock()
	if running {
		return fmt.Errorf("testnet: node %d is running", i)
	}
	logf, err := os.OpenFile(filepath.Join(m.nodeDir(i), "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", m.Lab.Namespace(i), m.opts.Binary, "agent", "--config", m.cfgPaths[i])
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C at the terminal reaches the
	// testnet, which stops the agents in order; and it dies with us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.spawn(cmd); err != nil {
		return fmt.Errorf("testnet: start node %d: %w", i, err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.mu.Lock()
	m.procs[i] = p
	m.pids = append(m.pids, cmd.Process.Pid)
	m.mu.Unlock()
	return nil
}

// PIDs are the process IDs of every agent the mesh started, restarts
// included.
func (m *NetnsMesh) PIDs() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.pids)
}

// spawn starts cmd from the mesh's spawner thread. The kernel sends
// Pdeathsig when the thread that forked the child exits, not the
// process, and Go ends a thread whose goroutine exits while locked to it
// (as the lab's namespace calls do): forking from a thread locked for
// the mesh's whole life makes "dies with us" mean the testnet process.
func (m *NetnsMesh) spawn(cmd *exec.Cmd) error {
	m.spawnOnce.Do(func() {
		m.spawnReq = make(chan spawnReq)
		m.spawnDone = make(chan struct{})
		go func() {
			defer close(m.spawnDone)
			runtime.LockOSThread() // and never unlocked: the thread ends with it
			for r := range m.spawnReq {
				r.err <- r.cmd.Start()
			}
		}()
	})
	req := spawnReq{cmd: cmd, err: make(chan error, 1)}
	m.mu.Lock()
	closed := m.spawnClosed
	if !closed {
		m.spawnReq <- req // under mu: Close cannot close the channel meanwhile
	}
	m.mu.Unlock()
	if closed {
		return errors.New("testnet: the mesh is closed")
	}
	return <-req.err
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// Running reports whether node i's process runs.
func (m *NetnsMesh) Running(i int) bool {
	m.mu.Lock()
	p := m.procs[i]
	m.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is node i's process ID (0 when it does not run).
func (m *NetnsMesh) PID(i int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.procs[i]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// waitUp waits until node i answers on its admin socket, and learns its
// peer ID.
func (m *NetnsMesh) waitUp(ctx context.Context, i int) error {
	sock := filepath.Join(m.nodeDir(i), "admin.sock")
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := Poll(wctx, 20*time.Millisecond, func() (bool, string) {
		m.mu.Lock()
		p := m.procs[i]
		m.mu.Unlock()
		select {
		case <-p.done:
			return true, ""
		default:
		}
		if m.clients[i] == nil {
			tok, err := admin.ReadTokenFile(admin.DefaultTokenFile(sock))
			if err != nil {
				return false, fmt.Sprintf("node %d has not written its admin token: %v", i, err)
			}
			c, err := admin.NewClient(sock, tok, admin.ClientOptions{Timeout: 10 * time.Second})
			if err != nil {
				return false, err.Error()
			}
			m.clients[i] = c
		}
		st, err := m.clients[i].Status(wctx)
		if err != nil {
			return false, fmt.Sprintf("node %d does not answer: %v", i, err)
		}
		m.ids[i] = st.Node.ID
		return true, ""
	})
	if !m.Running(i) {
		return fmt.Errorf("testnet: node %d exited at start (%v); the end of its log:\n%s", i, m.exitErr(i), m.logTail(i, 5))
	}
	if err != nil {
		return fmt.Errorf("testnet: node %d: %w; the end of its log:\n%s", i, err, m.logTail(i, 5))
	}
	return nil
}

// Memory reads the running agents' peak resident sets (VmHWM): their
// sum, and each agent's own (First is its node's index).
func (m *NetnsMesh) Memory() ProcessStats {
	var ps ProcessStats
	for _, i := range m.runningNodes() {
		pid := m.PID(i)
		mb, err := peakRSSMB(pid)
		if err != nil {
			continue
		}
		ps.Processes = append(ps.Processes, ProcessStats{PID: pid, First: i, Nodes: 1, PeakRSSMB: mb, PeakRSSPerNodeMB: mb})
		ps.PeakRSSMB += mb
		ps.Nodes++
	}
	if ps.Nodes > 0 {
		ps.PeakRSSPerNodeMB = ps.PeakRSSMB / float64(ps.Nodes)
	}
	return ps
}

// peakRSSMB is process pid's VmHWM in MB.
func peakRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM: %w", pid, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// logTail is the last n lines of node i's agent.log.
func (m *NetnsMesh) logTail(i, n int) string {
	b, err := os.ReadFile(filepath.Join(m.nodeDir(i), "agent.log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (m *NetnsMesh) exitErr(i int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.procs[i]; p != nil {
		select {
		case <-p.done:
			return p.err
		default:
		}
	}
	return nil
}

// Sign signs cmd with the run's operator key for this mesh.
func (m *NetnsMesh) Sign(cmd intel.OperatorCommand) (intel.OperatorSigned, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return intel.OperatorSigned{}, fmt.Errorf("testnet: nonce: %w", err)
	}
	now := time.Now().UTC()
	cmd.Header = intel.OperatorHeader{Mesh: m.meshID, Nonce: hex.EncodeToString(nonce), Issued: now, Expires: now.Add(10 * time.Minute)}
	return intel.SignOperatorCommand(m.operator, cmd)
}

// Submit signs cmd and commits it through node i's admin API.
func (m *NetnsMesh) Submit(ctx context.Context, i int, cmd intel.OperatorCommand) error {
	if m.meshID == "" {
		if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
			st, err := m.clients[i].Operator(ctx)
			if err != nil {
				return false, err.Error()
			}
			m.meshID = st.Mesh
			return m.meshID != "", fmt.Sprintf("node %d knows no mesh ID yet", i)
		}); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
	}
	s, err := m.Sign(cmd)
	if err != nil {
		return err
	}
	if _, err := m.clients[i].SubmitOperator(ctx, s); err != nil {
		return fmt.Errorf("testnet: %s through node %d: %w", cmd.Op, i, err)
	}
	return nil
}

// createJoinToken has the operator create a join token for uses nodes,
// valid for an hour, through node 0, and returns the secret.
func (m *NetnsMesh) createJoinToken(ctx context.Context, uses int) (string, error) {
	secret, pub, err := intel.NewJoinToken()
	if err != nil {
		return "", fmt.Errorf("testnet: %w", err)
	}
	cmd := intel.OperatorCommand{Op: intel.OpCreateJoinToken, TokenKey: pub, TokenUses: uses, TokenTTLSeconds: int64(time.Hour / time.Second)}
	if err := m.Submit(ctx, 0, cmd); err != nil {
		return "", err
	}
	return secret, nil
}

// WaitReady waits until every running node has every running node on its
// roster and at least one gossip peer (when more than one runs).
func (m *NetnsMesh) WaitReady(ctx context.Context) error {
	return Poll(ctx, 50*time.Millisecond, func() (bool, string) { return m.caughtUp(ctx, m.runningNodes()) })
}

func (m *NetnsMesh) runningNodes() []int {
	var out []int
	for i := range m.procs {
		if m.Running(i) {
			out = append(out, i)
		}
	}
	return out
}

// caughtUp: each of nodes runs, has every running node on its roster and
// a gossip peer.
func (m *NetnsMesh) caughtUp(ctx context.Context, nodes []int) (bool, string) {
	running := m.runningNodes()
	for _, i := range nodes {
		if !m.Running(i) {
			return false, fmt.Sprintf("node %d is not running", i)
		}
		ms, err := m.clients[i].Members(ctx)
		if err != nil {
			return false, fmt.Sprintf("node %d: members: %v", i, err)
		}
		for _, j := range running {
			if !slices.ContainsFunc(ms, func(x admin.Member) bool { return x.ID == m.ids[j] }) {
				return false, fmt.Sprintf("node %d does not have node %d on its roster", i, j)
			}
		}
		if len(running) > 1 {
			st, err := m.clients[i].Status(ctx)
			if err != nil {
				return false, fmt.Sprintf("node %d: status: %v", i, err)
			}
			if st.Mesh.Peers == 0 {
				return false, fmt.Sprintf("node %d has no peer", i)
			}
		}
	}
	return true, ""
}

// Kill sends node i's process SIGKILL and waits until it is reaped. Its
// namespace, with the kernel state it left (its nftables table), stays.
func (m *NetnsMesh) Kill(i int) error {
	m.mu.Lock()
	p := m.procs[i]
	m.procs[i] = nil
	m.mu.Unlock()
	if p == nil {
		return fmt.Errorf("testnet: node %d is not running", i)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return nil
}

// Restart starts node i again on its data directory and waits until it
// answers.
func (m *NetnsMesh) Restart(ctx context.Context, i int) error {
	if err := m.start(i); err != nil {
		return err
	}
	return m.waitUp(ctx, i)
}

// stop ends node i with SIGTERM (the agent's clean shutdown), and
// SIGKILL if it is still there after grace.
func (m *NetnsMesh) stop(i int, grace time.Duration) error {
	m.mu.Lock()
	p := m.procs[i]
	m.procs[i] = nil
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("node %d did not stop within %s of SIGTERM: killed", i, grace)
	}
}

// Close stops every agent (SIGTERM, SIGKILL after 10 s), removes the
// lab's namespaces and a temporary data directory. Idempotent.
func (m *NetnsMesh) Close() error {
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for i := range m.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.stop(i, 10*time.Second); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	m.mu.Lock()
	spawner := m.spawnReq != nil && !m.spawnClosed
	if spawner {
		close(m.spawnReq) // every agent is gone: its thread may end
	}
	m.spawnClosed = true
	m.mu.Unlock()
	if spawner {
		<-m.spawnDone
	}
	for _, c := range m.clients {
		if c != nil {
			c.Close()
		}
	}
	if m.Lab != nil {
		if err := m.Lab.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.tempDir {
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, err)
		}
		m.tempDir = false
	}
	return errors.Join(errs...)
}

// notFound reports whether err is the admin API's 404.
func notFound(err error) bool {
	var ae *admin.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}
