package testnet

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/store"
)

// Resource profiles of the nodes a mesh starts.
const (
	// ProfileDefault runs every node as `meshward agent` would, with
	// loopback Raft timings, and has every node dial every node started
	// before it.
	ProfileDefault = "default"
	// ProfileSim trades speed of reaction for footprint, for meshes of
	// hundreds of nodes in one process: longer Raft heartbeats and
	// election timeouts, gossip heartbeats and anti-entropy rounds
	// further apart, GossipSub meshes of 4 peers (6), at most SimJoinWindow nodes waiting to be admitted
	// at once, stores that do not fsync each commit (Kill closes a
	// store cleanly), a stranger's grace of 10 minutes (time to be
	// admitted), and each node past the first SimServers dials only the
	// SimPeers-1 started just before it and SimRandomPeers picked at
	// random among the others (a small world: GossipSub spreads a
	// message along any connected graph, and the random links keep its
	// diameter short), and joins through one of the servers in turn, so
	// that connections, and file descriptors, grow with the number of
	// nodes and not its square, and no node holds a connection to each.
	// The nodes of one process share one cache of verified envelopes
	// (profile.shareVerify).
	ProfileSim = "sim"
	// SimProfileAbove is the mesh size above which Start chooses
	// ProfileSim when Options.Profile is empty.
	SimProfileAbove = 50
	// SimPeers-1 is how many of the nodes started just before it a node
	// dials under ProfileSim.
	SimPeers = 4
	// SimRandomPeers is how many of the nodes started before those a
	// node dials under ProfileSim, picked at random (seeded by its
	// index: a run's graph is the same every time).
	SimRandomPeers = 2
	// SimServers is how many of the first nodes started (the founder and
	// those that join first: the voters and standbys to be) dial every
	// node before them under ProfileSim.
	SimServers = SimVoters + consensus.DefaultStandbys
	// SimJoinWindow is how many nodes may wait to be admitted at once
	// under ProfileSim.
	SimJoinWindow = 16
	// SimVoters is how many voters a mesh has (consensus.DefaultMaxVoters).
	SimVoters = consensus.DefaultMaxVoters
)

// profile is what a profile changes.
type profile struct {
	name string
	// timeouts replace loopbackTimeouts when set.
	timeouts *node.ConsensusTimeouts
	// peers bounds the earlier nodes a node dials (0: all of them).
	peers int
	// configure adjusts a node's configuration.
	configure func(*node.Config)
	// joinWindow bounds the nodes started and not yet admitted (0: no
	// bound): Start waits for node i-joinWindow to be on its own roster
	// before it starts node i, so that joins do not pile up at the
	// node they go through.
	joinWindow int
	// noSync opens the nodes' stores without syncing each commit: the
	// operating system still holds every write, which is enough for a
	// mesh whose nodes die only as Kill stops them, and hundreds of
	// stores fsyncing each commit on one disk stall one another.
	noSync bool
	// compactInterval, with noSync, is the store.Options.CompactInterval
	// of the stores the mesh opens for the nodes past the first
	// SimServers (see storeOptions).
	compactInterval time.Duration
	// shareVerify gives the mesh's nodes one cache of verified envelopes
	// (node.Options.VerifyCache): hundreds of nodes on two cores
	// otherwise verify every envelope hundreds of times over, which a
	// mesh of real sites does each on its own CPU.
	shareVerify bool
}

// Idle timings of ProfileSim, production's in parentheses. A node at
// rest costs what its timers wake it for, and hundreds share two
// cores: a 150-node mesh at rest spent a sixth of its CPU in Badger's
// compactors (each store's two wake every 50 ms), an eighth in GossipSub's
// heartbeat and score decay (each a second) and a twentieth in the
// edges' sync ticks (200 ms).
const (
	// simCompactInterval: the edges' stores compact on their own, level
	// 0 looked at every 5 s (Badger's compactors). An edge writes
	// little; the servers, which write the raft log, keep Badger's.
	simCompactInterval = 5 * time.Second
	// simRouterHeartbeat is GossipSub's heartbeat (1 s): meshes are
	// repaired, and gossip (IHAVE) emitted, every 4 s; flood publishing
	// still sends a node's own messages to all its peers at once.
	simRouterHeartbeat = 4 * time.Second
	// simScoreDecay is the score counters' decay interval (1 s), their
	// half-lives kept (gossip.Options.ScoreDecayInterval).
	simScoreDecay = 5 * time.Second
	// simMuxerKeepAlive and simMuxerMeasureRTT are how often yamux pings
	// each connection to find it dead, and to measure its round trip
	// (30 s each): both wake both ends of every connection, a quarter of
	// the wakeups of a resting 150-node mesh (the servers hold a
	// connection to most edges). On loopback a dead peer's connections
	// are closed by the kernel, and a partition closes them (gater).
	simMuxerKeepAlive  = 2 * time.Minute
	simMuxerMeasureRTT = 10 * time.Minute
	// simMeshDegree is GossipSub's mesh degree (6): every node receives
	// each message from about that many mesh peers, and on two cores a
	// thousand nodes pay for every copy. An attack's burst (two
	// sightings and the commit, to every node) cost a third less CPU
	// with 4: 1.52 CPU-s against 2.24 at 600 nodes in one process, 3.44
	// against 5.07 at 1,000 in three (Report.AttackCPUMs).
	simMeshDegree = 4
	// simGossipTargets is how many peers outside its mesh a node sends
	// gossip (IHAVE) to each heartbeat, a topic (GossipSub's: the mesh
	// degree or a quarter of those peers, whichever is more). The
	// servers hold connections to hundreds of edges, and each sent
	// IHAVEs to a quarter of them every heartbeat, for three heartbeats
	// after every message: at 300 nodes in one process, 2,400 to 3,400
	// control RPCs (2,900 to 4,600 IHAVEs) every 4 s after an attack,
	// against 14 once its messages were forgotten.
	simGossipTargets = simMeshDegree
	// simMeshPublishOnly: a node sends its own messages to its mesh, as
	// it forwards others' (gossip.Options.MeshPublishOnly), rather than
	// to every peer it is connected to. The attacked sites and the
	// leader are raft servers, connected to hundreds of edges: each of
	// their messages went to all of them at once, and every one passed
	// it on to a mesh that mostly had it already. At 300 nodes in one
	// process an attack's burst took 2,790 message RPCs against 4,145
	// and 540 CPU-ms against 600; at 1,000 nodes propagation p99 was 745
	// and 714 ms in two runs against 866 to 1,070 in five, the
	// certified block's first hops fewer (commit → edge p50 about
	// 100 ms later).
	simMeshPublishOnly = true
	// simDetectorPoll is how often a file source looks at its file
	// besides inotify's wakes (250 ms).
	simDetectorPoll = 10 * time.Second
	// simEdgeSync is how often an edge looks for gaps (200 ms): a
	// certified message that shows one wakes it at once, and retries
	// have their own timer, so the tick only bounds how late it notices
	// its promotion to server (entries applied twice are skipped by
	// index), how often a joining edge polls until it is admitted, and
	// paces its persists.
	simEdgeSync = time.Second
	// simEdgePoll is how often an edge that knows of no gap asks a
	// voter what follows its head (10 s), which opens a stream, and a
	// connection when the voter, holding one to every edge, trimmed it.
	simEdgePoll = 30 * time.Second
	// simEdgePersist is how often an edge writes what it applied
	// (150 sync intervals: 30 s, and 150 s with simEdgeSync). An edge
	// writes its whole state, a thousand members' roster included, and
	// every edge does once more after the mesh forms (its last
	// admissions): at 1,000 nodes some 12 ms an edge, 12 CPU-s spread
	// over the interval, in which the attack falls. An edge killed
	// between two writes fetches again what it applied since the last.
	simEdgePersist = 10 * time.Minute
)

// simTimeouts are Raft's timings under ProfileSim: hundreds of nodes
// keep both cores busy while the mesh forms, and a heartbeat that waits
// a second for the CPU must not depose a healthy leader (each election
// stalls every join behind it).
var simTimeouts = &node.ConsensusTimeouts{
	Heartbeat:   3 * time.Second,
	Election:    3 * time.Second,
	LeaderLease: 1500 * time.Millisecond,
	Commit:      50 * time.Millisecond,
}

// simHeartbeat is the interval of the nodes' health heartbeats under
// ProfileSim for a mesh of n nodes: every heartbeat is received,
// verified and forwarded by every node, so the mesh's cost of them grows
// with the square of its size; spreading them keeps it to about one
// every four seconds mesh-wide, and never more often than once a minute
// a node. At one a second mesh-wide they were a quarter of a resting
// 150-node mesh's CPU (some 350 µs a node a heartbeat).
func simHeartbeat(n int) time.Duration {
	return max(time.Minute, time.Duration(n)*simHeartbeatSpread)
}

// simHeartbeatSpread is, under ProfileSim, the interval of a node's
// health heartbeats for each node of the mesh.
const simHeartbeatSpread = 4 * time.Second

// simNodeDownAfter is how long a member goes unheard before node-down
// alerts call it down under ProfileSim: three of its heartbeats.
func simNodeDownAfter(n int) time.Duration { return 3 * simHeartbeat(n) }

func profileFor(name string) (profile, error) {
	switch name {
	case "", ProfileDefault:
		return profile{name: ProfileDefault, configure: func(*node.Config) {}}, nil
	case ProfileSim:
		return profile{name: ProfileSim, timeouts: simTimeouts, peers: SimPeers, joinWindow: SimJoinWindow, noSync: true, compactInterval: simCompactInterval, shareVerify: true, configure: func(c *node.Config) {
			c.Gossip.HeartbeatInterval = time.Minute
			c.Gossip.SyncInterval = time.Minute
			c.Gossip.RouterHeartbeat = simRouterHeartbeat
			c.Gossip.ScoreDecayInterval = simScoreDecay
			c.Gossip.MuxerKeepAlive = simMuxerKeepAlive
			c.Gossip.MuxerMeasureRTT = simMuxerMeasureRTT
			c.Gossip.MeshDegree = simMeshDegree
			c.Gossip.GossipTargets = simGossipTargets
			c.Gossip.MeshPublishOnly = simMeshPublishOnly
			c.Consensus.EdgeSyncInterval = simEdgeSync
			c.Consensus.EdgePollInterval = simEdgePoll
			c.Consensus.EdgePersistInterval = simEdgePersist
			// TCP only: QUIC runs its acknowledgements, pacing and
			// timers in the process, for every connection, where TCP
			// leaves them to the kernel. A 120-node mesh formed on
			// 32 CPU-s over TCP, 36 over QUIC and 42 listening on both
			// (which doubles the listeners and lets a pair hold one
			// connection of each), at 790 MB against 920 and 1,140.
			c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
			// inotify wakes the file sources; the poll is the fallback
			// (each poll wakes every node's source).
			c.Detectors.PollInterval = simDetectorPoll
			// Hundreds of joins queue at the founder: a joiner may wait
			// longer than a stranger's usual grace to be admitted, and
			// be banned meanwhile.
			c.Gossip.StrangerGrace = 10 * time.Minute
		}}, nil
	default:
		return profile{}, fmt.Errorf("testnet: profile %q: allowed values are %q and %q", name, ProfileDefault, ProfileSim)
	}
}

// storeOptions are the options of the store the mesh opens for node i
// in dir under a profile without synced writes: the servers to be (the
// first SimServers) keep Badger's compactors.
func (p profile) storeOptions(dir string, i int) store.Options {
	so := store.DefaultOptions(dir)
	so.SyncWrites = false
	if i >= SimServers {
		so.CompactInterval = p.compactInterval
	}
	return so
}

// dialPeers returns the addresses node i dials at start: all of addrs
// (the nodes started before it), or under a bounded profile, for the
// nodes past the first SimServers, the last peers-1 of them and
// SimRandomPeers others picked at random, seeded by len(addrs).
func (p profile) dialPeers(addrs []string) []string {
	last := p.peers - 1
	if p.peers == 0 || len(addrs) <= max(SimServers, last+SimRandomPeers) {
		return append([]string{}, addrs...)
	}
	rest := addrs[:len(addrs)-last]
	out := make([]string, 0, last+SimRandomPeers)
	rng := rand.New(rand.NewPCG(uint64(len(addrs)), 0x6d657368))
	for _, k := range rng.Perm(len(rest))[:SimRandomPeers] {
		out = append(out, rest[k])
	}
	return append(out, addrs[len(addrs)-last:]...)
}

// joinThrough is the address node i joins through, given the addresses
// of the nodes started before it: the founder's, or under a bounded
// profile, once the servers are admitted (a join window after them),
// each server in turn, so that no node takes every join (and its
// connection).
func (p profile) joinThrough(addrs []string, i int) string {
	if p.peers == 0 || i < SimServers+p.joinWindow || len(addrs) < SimServers {
		return addrs[0]
	}
	return addrs[i%SimServers]
}

// gossipPeersWanted is how many gossip peers each of running nodes must
// see before the mesh is ready: all the others, or under a bounded
// profile at least one (the gossip graph is connected through the
// founder and each node's dial peers).
func (p profile) gossipPeersWanted(running int) int {
	if p.peers == 0 {
		return running - 1
	}
	return min(running-1, 1)
}

// Progress is how far a mesh has formed: nodes started (node.Start
// returned), joined (on their own roster, so the mesh admitted them)
// and ready (joined and connected to the gossip topic), out of Nodes.
type Progress struct {
	Nodes, Started, Joined, Ready int
	Elapsed                       time.Duration
}

func (p Progress) String() string {
	return fmt.Sprintf("mesh forming: %d/%d started, %d joined, %d ready (%s)", p.Started, p.Nodes, p.Joined, p.Ready, p.Elapsed.Round(100*time.Millisecond))
}

// formation counts the nodes started, joined and ready. It may run
// beside Start: it reads the nodes started so far from m.formed.
func (m *Mesh) formation() Progress {
	prof, _ := profileFor(m.opts.Profile)
	m.formedMu.Lock()
	nodes := slices.Clone(m.formed)
	m.formedMu.Unlock()
	p := Progress{Nodes: m.opts.Nodes, Started: len(nodes), Elapsed: time.Since(m.started)}
	for _, n := range nodes {
		if !n.Consensus().IsMember(n.ID()) {
			continue
		}
		p.Joined++
		if len(n.Gossip().Peers()) >= prof.gossipPeersWanted(len(nodes)) {
			p.Ready++
		}
	}
	return p
}

// started records a node Start started, for formation.
func (m *Mesh) startedNode(n *node.Node) {
	m.formedMu.Lock()
	m.formed = append(m.formed, n)
	m.formedMu.Unlock()
}

// startProgress reports to Options.Progress once a second, from its own
// goroutine (counting reads every node's gossip peers, which waits on
// each node's GossipSub loop), until the returned stop is called, which
// reports a last time.
func (m *Mesh) startProgress() (stop func()) {
	m.started = time.Now()
	if m.opts.Progress == nil {
		return func() {}
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
				m.opts.Progress(m.formation())
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
		m.opts.Progress(m.formation())
	})
}

// RaiseFileLimit raises the process's soft limit of open files to its
// hard limit (every node holds sockets, Badger files and a peer book)
// and returns both limits as they are afterwards.
func RaiseFileLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", l.Max, err)
		}
	}
	return l.Cur, l.Max, nil
}
