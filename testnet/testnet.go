package testnet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/store"
)

// Options configure a local mesh.
type Options struct {
	// Nodes is the number of nodes (default 5).
	Nodes int
	// Dir holds the nodes' data directories; empty means a fresh temporary
	// directory that Close removes.
	Dir string
	// Logger receives every node's logs; nil discards them.
	Logger *slog.Logger
	// MinNodes is the corroboration threshold k (default 2).
	MinNodes int
	// LocalBlock enables the first-tier local block on detecting nodes.
	LocalBlock bool
	// Configure, if set, may adjust each node's configuration before it
	// starts (i is the node's index).
	Configure func(i int, cfg *node.Config)
	// Clock, if set, returns node i's clock (nil entries mean time.Now).
	Clock func(i int) func() time.Time
	// Profile is the nodes' resource profile: "" or ProfileDefault, or
	// ProfileSim (smaller footprint for large meshes; see profile.go).
	// Start chooses ProfileSim for more than SimProfileAbove nodes when
	// Profile is empty.
	Profile string
	// Progress, if set, is called as the mesh forms (see profile.go).
	Progress func(Progress)
}

// Mesh is a running local mesh.
type Mesh struct {
	Nodes []*node.Node

	opts    Options
	dir     string
	tempDir bool
	logs    []string // each node's auth.log
	gaters  []*gater // each node's connection gater (Partition)
	// cfgs are the nodes' configurations, down marks the nodes Kill
	// stopped (run_faults.go).
	cfgs []node.Config
	down []bool
	// stores are the stores the mesh opened for its nodes (profiles
	// without synced writes), closed after their nodes; nil entries
	// were opened by the nodes.
	stores []*store.Store
	// started is when Start began; formed are the nodes it started so
	// far, for the progress display (profile.go).
	started  time.Time
	formedMu sync.Mutex
	formed   []*node.Node
	// operator is the mesh's admin operator key (Operator).
	operator ed25519.PrivateKey
	mu       sync.Mutex
	// verify is the nodes' shared cache of verified envelopes under a
	// profile that shares one (profile.shareVerify), made once.
	verify     *intel.VerifyCache
	verifyOnce sync.Once
}

// Timeouts tuned for a mesh whose every link is loopback.
var loopbackTimeouts = &node.ConsensusTimeouts{
	Heartbeat:   300 * time.Millisecond,
	Election:    300 * time.Millisecond,
	LeaderLease: 150 * time.Millisecond,
	Commit:      20 * time.Millisecond,
}

// Start launches the mesh: node 0 founds it with the mesh's operator key
// as its bootstrap operator; the operator creates a join token for the
// others (uses: Nodes-1, valid for an hour) through node 0, and every
// other node joins through node 0 with it and gossips with every node
// started before it. Start returns when every node is on the roster and
// connected to the topic.
func Start(ctx context.Context, opts Options) (_ *Mesh, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 5
	}
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("testnet: nodes must be at least 1, got %d", opts.Nodes)
	}
	if opts.MinNodes == 0 {
		opts.MinNodes = 2
	}
	if opts.Profile == "" && opts.Nodes > SimProfileAbove {
		opts.Profile = ProfileSim
	}
	prof, err := profileFor(opts.Profile)
	if err != nil {
		return nil, err
	}
	opts.Profile = prof.name
	m := &Mesh{opts: opts, dir: opts.Dir}
	if m.dir == "" {
		if m.dir, err = os.MkdirTemp("", "meshward-testnet-"); err != nil {
			return nil, fmt.Errorf("testnet: temp dir: %w", err)
		}
		m.tempDir = true
	}
	stopProgress := m.startProgress()
	defer func() {
		stopProgress()
		if err != nil {
			m.Close()
		}
	}()
	token := ""
	if m.operator, err = newOperatorKey(); err != nil {
		return nil, err
	}
	var addrs []string
	for i := range opts.Nodes {
		s := nodeSpec{Index: i, Peers: prof.dialPeers(addrs), Token: token}
		if i == 0 {
			s.Operator = operatorKeyText(m.operator)
		} else {
			s.Join = prof.joinThrough(addrs, i)
		}
		cfg, authLog, err := m.nodeConfig(prof, s)
		if err != nil {
			return nil, err
		}
		if w := prof.joinWindow; w > 0 && i >= w {
			if err := waitAdmitted(ctx, m.Nodes[i-w], i-w); err != nil {
				return nil, err
			}
		}
		n, err := m.addNode(ctx, i, cfg, authLog)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, n.Addrs()[0])
		if i == 0 && opts.Nodes > 1 {
			if token, err = m.createJoinToken(ctx, opts.Nodes-1); err != nil {
				return nil, err
			}
		}
	}
	err = m.WaitReady(ctx)
	stopProgress()
	if err != nil {
		return nil, err
	}
	return m, nil
}

// nodeSpec is what sets one node apart from the others of its mesh.
type nodeSpec struct {
	// Index is the node's index in the mesh.
	Index int
	// Peers are the addresses it dials at start.
	Peers []string
	// Join is the address of the node it joins through; empty for the
	// founder, which registers Operator as its bootstrap operator.
	Join, Operator string
	// Token is the join token's secret (none for the founder).
	Token string
}

// nodeConfig is the configuration of the node s describes under prof, as
// Start gives it (Options.Configure applied), with its data directory and
// empty auth.log made under the mesh's directory; it returns the
// auth.log's path too.
func (m *Mesh) nodeConfig(prof profile, s nodeSpec) (node.Config, string, error) {
	dir := nodeDataDir(m.dir, s.Index)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return node.Config{}, "", fmt.Errorf("testnet: %w", err)
	}
	authLog := filepath.Join(dir, "auth.log")
	if err := os.WriteFile(authLog, nil, 0o600); err != nil {
		return node.Config{}, "", fmt.Errorf("testnet: %w", err)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.Site = fmt.Sprintf("site-%02d", s.Index)
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.Peers = s.Peers
	cfg.Consensus.JoinToken = s.Token
	if s.Join == "" {
		cfg.Consensus.Bootstrap = true
		cfg.Consensus.BootstrapOperators = []string{s.Operator}
	} else {
		cfg.Consensus.Join = []string{s.Join}
	}
	cfg.Corroboration.MinNodes = m.opts.MinNodes
	cfg.LocalBlock.Enabled = m.opts.LocalBlock
	cfg.Detectors.Paths = []string{authLog}
	cfg.Detectors.FromStart = true
	cfg.Detectors.PollInterval = 20 * time.Millisecond
	cfg.Responders.Resync = 5 * time.Second
	prof.configure(&cfg)
	if prof.name == ProfileSim {
		cfg.Gossip.HeartbeatInterval = simHeartbeat(m.opts.Nodes)
		cfg.Alerts.NodeDownAfter = simNodeDownAfter(m.opts.Nodes)
	}
	if m.opts.Configure != nil {
		m.opts.Configure(s.Index, &cfg)
	}
	return cfg, authLog, nil
}

// waitAdmitted waits until n (node i) is on its own roster.
func waitAdmitted(ctx context.Context, n *node.Node, i int) error {
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		return n.Consensus().IsMember(n.ID()), fmt.Sprintf("node %d is not admitted yet", i)
	}); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	return nil
}

// addNode starts node i (its index in the mesh) with cfg and appends it
// to m.Nodes.
func (m *Mesh) addNode(ctx context.Context, i int, cfg node.Config, authLog string) (*node.Node, error) {
	g := newGater()
	n, st, err := m.startNode(ctx, i, cfg, g)
	if err != nil {
		return nil, fmt.Errorf("testnet: start node %d: %w", i, err)
	}
	m.Nodes = append(m.Nodes, n)
	m.stores = append(m.stores, st)
	m.gaters = append(m.gaters, g)
	m.logs = append(m.logs, authLog)
	m.cfgs = append(m.cfgs, cfg)
	m.down = append(m.down, false)
	m.startedNode(n)
	return n, nil
}

// startNode starts node i with cfg and the connection gater g. Under a
// profile that does not sync writes the mesh opens the node's store
// itself, where the node would (data_dir/store), and returns it.
func (m *Mesh) startNode(ctx context.Context, i int, cfg node.Config, g *gater) (*node.Node, *store.Store, error) {
	o := m.nodeOptions(i, g)
	var st *store.Store
	if p, _ := profileFor(m.opts.Profile); p.noSync {
		var err error
		if st, err = store.Open(p.storeOptions(filepath.Join(cfg.DataDir, "store"), i)); err != nil {
			return nil, nil, err
		}
		o.Store = st
	}
	n, err := node.Start(ctx, cfg, o)
	if err != nil {
		if st != nil {
			err = errors.Join(err, st.Close())
		}
		return nil, nil, err
	}
	return n, st, nil
}

// closeNode closes node i and the store the mesh opened for it.
func (m *Mesh) closeNode(i int) error {
	err := m.Nodes[i].Close()
	if st := m.stores[i]; st != nil {
		err = errors.Join(err, st.Close())
		m.stores[i] = nil
	}
	return err
}

// nodeOptions are node i's start options, with its gater g.
func (m *Mesh) nodeOptions(i int, g *gater) node.Options {
	logger := m.opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := node.Options{Logger: logger, ConsensusTimeouts: loopbackTimeouts, ConnectionGater: g}
	p, _ := profileFor(m.opts.Profile)
	if p.timeouts != nil {
		o.ConsensusTimeouts = p.timeouts
	}
	if p.shareVerify {
		m.verifyOnce.Do(func() { m.verify = intel.NewVerifyCache(intel.DefaultVerifyCacheSize) })
		o.VerifyCache = m.verify
	}
	if m.opts.Clock != nil {
		o.Clock = m.opts.Clock(i)
	}
	return o
}

// WaitReady waits until every node is on every node's roster and every
// node sees all others in the gossip topic. What it found true stays
// found (a node's roster only grows while a mesh forms, and its gossip
// peers once counted are not asked again), so that a look at a mesh of
// hundreds of nodes costs what changed since the last, not the square
// of the mesh.
func (m *Mesh) WaitReady(ctx context.Context) error {
	prof, _ := profileFor(m.opts.Profile)
	interval := 20 * time.Millisecond
	if len(m.Nodes) > SimProfileAbove {
		interval = 100 * time.Millisecond
	}
	onRoster := make([]int, len(m.Nodes)) // node i has m.Nodes[:onRoster[i]] on its roster
	peered := make([]bool, len(m.Nodes))
	return Poll(ctx, interval, func() (bool, string) {
		for i, n := range m.Nodes {
			if m.down[i] {
				continue
			}
			for ; onRoster[i] < len(m.Nodes); onRoster[i]++ {
				if o := m.Nodes[onRoster[i]]; !n.Consensus().IsMember(o.ID()) {
					return false, fmt.Sprintf("node %d does not yet have %s on its roster", i, o.Site())
				}
			}
			if peered[i] {
				continue
			}
			if got, want := len(n.Gossip().Peers()), prof.gossipPeersWanted(m.running()); got < want {
				return false, fmt.Sprintf("node %d has %d of %d gossip peers", i, got, want)
			}
			peered[i] = true
		}
		return true, ""
	})
}

// Poll calls cond every interval until it returns true or ctx ends; the
// error then carries cond's last explanation.
func Poll(ctx context.Context, interval time.Duration, cond func() (bool, string)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), why)
		case <-t.C:
		}
	}
}

// InjectSSHBruteForce appends failures failed-password lines from attacker
// to node i's auth.log, interleaved with other daemons' lines, as an
// OpenSSH server under a password-guessing attack would log them.
func (m *Mesh) InjectSSHBruteForce(i int, attacker netip.Addr, failures int) error {
	if i < 0 || i >= len(m.logs) {
		return fmt.Errorf("testnet: no node %d", i)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.OpenFile(m.logs[i], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testnet: open auth.log: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(SSHBruteForceLog(m.Nodes[i].Site(), attacker, failures, time.Now())); err != nil {
		return fmt.Errorf("testnet: write auth.log: %w", err)
	}
	return nil
}

// Close stops every node and removes a temporary data directory.
func (m *Mesh) Close() error {
	var errs []error
	for i := len(m.Nodes) - 1; i >= 0; i-- {
		if err := m.closeNode(i); err != nil && !m.down[i] {
			errs = append(errs, fmt.Errorf("close node %d: %w", i, err))
		}
	}
	if m.tempDir {
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// createJoinToken has the operator create a join token for uses nodes,
// valid for an hour, through node 0 once it has founded the mesh, and
// returns the secret.
func (m *Mesh) createJoinToken(ctx context.Context, uses int) (string, error) {
	c := m.Nodes[0].Consensus()
	if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		return c.MeshID() != "", "node 0 has not founded the mesh"
	}); err != nil {
		return "", fmt.Errorf("testnet: %w", err)
	}
	secret, pub, err := intel.NewJoinToken()
	if err != nil {
		return "", fmt.Errorf("testnet: %w", err)
	}
	cmd := intel.OperatorCommand{Op: intel.OpCreateJoinToken, TokenKey: pub, TokenUses: uses, TokenTTLSeconds: int64(time.Hour / time.Second)}
	if err := m.Operator().Submit(ctx, 0, cmd); err != nil {
		return "", err
	}
	return secret, nil
}
