package testnet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshward/meshward/node"
)

// The progress display ends with every node started, joined and ready,
// and the counts never go down while the mesh forms.
func TestStartReportsProgress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node mesh")
	}
	var mu sync.Mutex
	var got []Progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 3, Dir: t.TempDir(), Logger: testLogger(t), Progress: func(p Progress) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no progress reported")
	}
	if last := got[len(got)-1]; last.Nodes != 3 || last.Started != 3 || last.Joined != 3 || last.Ready != 3 {
		t.Fatalf("last progress %+v, want 3 started, joined and ready", last)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Started < got[i-1].Started {
			t.Errorf("started went down: %v", got)
		}
	}
	if s := got[len(got)-1].String(); s != fmt.Sprintf("mesh forming: 3/3 started, 3 joined, 3 ready (%s)", got[len(got)-1].Elapsed.Round(100*time.Millisecond)) {
		t.Errorf("progress line %q", s)
	}
}

func TestProfiles(t *testing.T) {
	if _, err := profileFor("huge"); err == nil {
		t.Fatal("unknown profile accepted")
	}
	def, _ := profileFor("")
	sim, _ := profileFor(ProfileSim)
	if def.name != ProfileDefault || sim.name != ProfileSim || sim.timeouts == nil || def.timeouts != nil {
		t.Fatalf("profiles %+v %+v", def, sim)
	}
	// Sim nodes listen on TCP alone (QUIC costs the process more).
	var simCfg node.Config
	simCfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	sim.configure(&simCfg)
	if !slices.Equal(simCfg.Listen, []string{"/ip4/127.0.0.1/tcp/0"}) {
		t.Errorf("sim nodes listen on %v, want TCP alone", simCfg.Listen)
	}
	var addrs []string
	for i := range 12 {
		addrs = append(addrs, fmt.Sprintf("a%d", i))
	}
	if got := def.dialPeers(addrs); !slices.Equal(got, addrs) {
		t.Errorf("default dials %v", got)
	}
	// Past the servers: SimRandomPeers distinct nodes among the earlier
	// ones, the same every time, then the last SimPeers-1 started.
	got := sim.dialPeers(addrs)
	if len(got) != SimRandomPeers+SimPeers-1 || !slices.Equal(got[SimRandomPeers:], []string{"a9", "a10", "a11"}) ||
		got[0] == got[1] || !slices.Contains(addrs[:9], got[0]) || !slices.Contains(addrs[:9], got[1]) {
		t.Errorf("sim dials %v", got)
	}
	if again := sim.dialPeers(addrs); !slices.Equal(again, got) {
		t.Errorf("sim dials %v, then %v", got, again)
	}
	// The servers to be dial every node before them.
	if got := sim.dialPeers(addrs[:SimServers]); !slices.Equal(got, addrs[:SimServers]) {
		t.Errorf("sim dials %v of %d", got, SimServers)
	}
	// Joins go through the founder until the servers are admitted, then
	// through each server in turn.
	if got := sim.joinThrough(addrs, SimServers+SimJoinWindow-1); got != "a0" {
		t.Errorf("node %d joins through %s", SimServers+SimJoinWindow-1, got)
	}
	seen := map[string]bool{}
	for i := range SimServers {
		seen[sim.joinThrough(addrs, 100+i)] = true
	}
	if len(seen) != SimServers || seen["a7"] {
		t.Errorf("joins spread over %v, want the first %d", seen, SimServers)
	}
	if got := def.joinThrough(addrs, 100); got != "a0" {
		t.Errorf("default profile joins through %s", got)
	}
	if def.gossipPeersWanted(200) != 199 || sim.gossipPeersWanted(200) != 1 || sim.gossipPeersWanted(1) != 0 {
		t.Error("gossip peers wanted")
	}
}

func TestRaiseFileLimit(t *testing.T) {
	soft, hard, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	if soft != hard || l.Cur != l.Max || l.Cur != soft {
		t.Fatalf("soft %d hard %d, limit now %+v", soft, hard, l)
	}
}

// TestSimIdleTimings: sim nodes idle at slower timings (GossipSub's
// heartbeat and score decay, the edges' sync and poll), and the stores
// the mesh opens for them compact on their own past the servers; the
// default profile keeps production's.
func TestSimIdleTimings(t *testing.T) {
	def, _ := profileFor(ProfileDefault)
	sim, _ := profileFor(ProfileSim)
	var defCfg, simCfg node.Config
	def.configure(&defCfg)
	sim.configure(&simCfg)
	if g, c := simCfg.Gossip, simCfg.Consensus; g.RouterHeartbeat != simRouterHeartbeat || g.ScoreDecayInterval != simScoreDecay ||
		c.EdgeSyncInterval != simEdgeSync || c.EdgePollInterval != simEdgePoll || c.EdgePersistInterval != simEdgePersist {
		t.Errorf("sim timings: router heartbeat %s, score decay %s, edge sync %s, edge poll %s, edge persist %s",
			g.RouterHeartbeat, g.ScoreDecayInterval, c.EdgeSyncInterval, c.EdgePollInterval, c.EdgePersistInterval)
	}
	if simCfg.Gossip.MeshDegree != simMeshDegree || simMeshDegree == 0 {
		t.Errorf("sim mesh degree %d, want %d", simCfg.Gossip.MeshDegree, simMeshDegree)
	}
	if !simCfg.Gossip.MeshPublishOnly || defCfg.Gossip.MeshPublishOnly {
		t.Errorf("mesh publish only: sim %v, default %v; want flood publishing in production only", simCfg.Gossip.MeshPublishOnly, defCfg.Gossip.MeshPublishOnly)
	}
	if simCfg.Gossip.GossipTargets != simGossipTargets || simGossipTargets == 0 || defCfg.Gossip.GossipTargets != 0 {
		t.Errorf("gossip targets: sim %d (want %d), default %d (want GossipSub's, 0)", simCfg.Gossip.GossipTargets, simGossipTargets, defCfg.Gossip.GossipTargets)
	}
	if g, c := defCfg.Gossip, defCfg.Consensus; g.RouterHeartbeat != 0 || g.ScoreDecayInterval != 0 || g.MeshDegree != 0 || c.EdgeSyncInterval != 0 || c.EdgePollInterval != 0 || c.EdgePersistInterval != 0 {
		t.Errorf("default profile changes production's timings: %+v %+v", g, c)
	}
	for i, want := range map[int]time.Duration{0: 0, SimServers - 1: 0, SimServers: simCompactInterval, 500: simCompactInterval} {
		so := sim.storeOptions("dir", i)
		if so.CompactInterval != want || so.SyncWrites || so.Dir != "dir" {
			t.Errorf("node %d's store: compact every %s (want %s), sync writes %v, dir %q", i, so.CompactInterval, want, so.SyncWrites, so.Dir)
		}
	}
}

// Under the sim profile a mesh of n nodes sends about one health
// heartbeat every four seconds in all (each node one every 4n s, at
// least a minute apart), and node-down alerts wait three of a node's
// heartbeats; the default profile keeps the configured ones.
func TestSimHeartbeatsSpread(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{51, 204 * time.Second}, {1000, 4000 * time.Second}} {
		m := &Mesh{opts: Options{Nodes: c.n, Profile: ProfileSim}, dir: t.TempDir()}
		sim, _ := profileFor(ProfileSim)
		cfg, _, err := m.nodeConfig(sim, nodeSpec{Index: 1, Join: "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBT4yzjLVg2ZE8Hh9kPHKFvbmx5TPRT7hxhtQ5eHmJs"})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Gossip.HeartbeatInterval != c.want || cfg.Alerts.NodeDownAfter != 3*c.want {
			t.Errorf("%d nodes: heartbeat every %s, down after %s; want %s and %s", c.n, cfg.Gossip.HeartbeatInterval, cfg.Alerts.NodeDownAfter, c.want, 3*c.want)
		}
	}
	if got := simHeartbeat(10); got != time.Minute {
		t.Errorf("10 nodes: heartbeat every %s, want a minute at least", got)
	}
}

// Under the sim profile the nodes of a mesh share one cache of verified
// envelopes; under the default profile each node keeps its own, as
// `meshward agent` does.
func TestSimSharesVerifyCache(t *testing.T) {
	sim := &Mesh{opts: Options{Nodes: 100, Profile: ProfileSim}}
	a, b := sim.nodeOptions(0, nil), sim.nodeOptions(57, nil)
	if a.VerifyCache == nil || a.VerifyCache != b.VerifyCache {
		t.Fatalf("sim profile: nodes 0 and 57 have caches %p and %p, want one shared", a.VerifyCache, b.VerifyCache)
	}
	def := &Mesh{opts: Options{Nodes: 5, Profile: ProfileDefault}}
	if c := def.nodeOptions(1, nil).VerifyCache; c != nil {
		t.Fatalf("default profile: node 1 gets a shared cache %p, want its own (nil)", c)
	}
}
