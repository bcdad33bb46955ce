package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/conngater"

	"github.com/meshward/meshward/intel"
)

// tbWriter sends log lines to t.Log until the test is over.
type tbWriter struct {
	tb   testing.TB
	done atomic.Bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() { w.done.Store(true) }) // registered first: runs last
	lvl := slog.LevelWarn
	if os.Getenv("MESHWARD_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func newKey(tb testing.TB) crypto.PrivKey {
	tb.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newTestHost(tb testing.TB, k crypto.PrivKey, gater *conngater.BasicConnectionGater) host.Host {
	tb.Helper()
	opts := []libp2p.Option{libp2p.Identity(k), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics(), libp2p.ResourceManager(&network.NullResourceManager{})}
	if gater != nil {
		opts = append(opts, libp2p.ConnectionGater(gater))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// testNode is one participant. Its key, log store and snapshot directory
// outlive a stop, so that restart brings the same node back.
type testNode struct {
	h     host.Host
	c     *Consensus
	key   crypto.PrivKey
	store *raft.InmemStore
	snaps string
	gater *conngater.BasicConnectionGater
	cfg   Config
}

func (n *testNode) info() peer.AddrInfo { return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()} }
func (n *testNode) id() string          { return n.h.ID().String() }

// fastTiming is the raft timing of small test clusters.
func fastTiming(c *Config) {
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 150*time.Millisecond, 150*time.Millisecond, 75*time.Millisecond, 5*time.Millisecond
	c.PromoteAfter, c.MembershipInterval = 200*time.Millisecond, 50*time.Millisecond
}

func newTestNode(tb testing.TB, log *slog.Logger, bootstrap bool, token string) *testNode {
	return newTestNodeWith(tb, log, bootstrap, token, func(*Config) {})
}

func newTestNodeWith(tb testing.TB, log *slog.Logger, bootstrap bool, token string, opt func(*Config)) *testNode {
	tb.Helper()
	n := &testNode{key: newKey(tb), store: raft.NewInmemStore(), snaps: tb.TempDir(), gater: mustGater(tb)}
	n.h = newTestHost(tb, n.key, n.gater)
	n.cfg = testConfig(n, log, bootstrap, token, opt)
	n.start(tb)
	return n
}

// testConfig is the configuration of a test participant on n's host:
// k=2 within 10 minutes, the test operator as the founder's admin, fast
// timing, then opt.
func testConfig(n *testNode, log *slog.Logger, bootstrap bool, token string, opt func(*Config)) Config {
	id := n.h.ID().String()
	cfg := Config{
		LocalID:        id,
		Site:           "site-" + shortID(id)[4:],
		Bootstrap:      bootstrap,
		JoinToken:      token,
		BootstrapRules: &Rules{MinNodes: 2, Window: 10 * time.Minute, BlockTTL: 24 * time.Hour, Floors: intel.DefaultFloors()},
		Logger:         log.With("node", shortID(id)),
	}
	if bootstrap {
		cfg.BootstrapOperators = []string{bootstrapOperatorText(testOperatorKey)}
	}
	fastTiming(&cfg)
	opt(&cfg)
	return cfg
}

func mustGater(tb testing.TB) *conngater.BasicConnectionGater {
	g, err := conngater.NewBasicConnectionGater(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func (n *testNode) start(tb testing.TB) {
	tb.Helper()
	snaps, err := raft.NewFileSnapshotStore(n.snaps, 2, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := New(context.Background(), n.h, n.store, n.store, snaps, n.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	n.c = c
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
}

// stop kills the node: raft and host go, the stores stay.
func (n *testNode) stop(tb testing.TB) {
	tb.Helper()
	if err := n.c.Close(); err != nil {
		tb.Errorf("close %s: %v", shortID(n.id()), err)
	}
	_ = n.h.Close()
}

// restart brings a stopped node back on a fresh host with the same key
// and stores, connected to peers (as the node's bootstrapper would).
func (n *testNode) restart(tb testing.TB, peers []*testNode) {
	tb.Helper()
	n.gater = mustGater(tb)
	n.h = newTestHost(tb, n.key, n.gater)
	n.start(tb)
	for _, p := range peers {
		if p == n {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.h.Connect(ctx, p.info())
		cancel()
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectedVoters is the voter count the membership loop settles on for n
// healthy nodes: at most MaxVoters, odd.
func expectedVoters(n, maxVoters int) int {
	v := min(n, maxVoters)
	if v%2 == 0 {
		v--
	}
	return v
}

func newCluster(tb testing.TB, n int) []*testNode {
	return newClusterWith(tb, n, func(*Config) {})
}

// newClusterWith bootstraps one node and joins n-1 more, the k-th through
// node k-1 (so joins are forwarded to the leader), and waits until every
// node sees the full roster and the voter set has grown to its target.
func newClusterWith(tb testing.TB, n int, opt func(*Config)) []*testNode {
	tb.Helper()
	log := testLogger(tb)
	return formCluster(tb, n, func(founder bool, secret string) *testNode {
		return newTestNodeWith(tb, log, founder, secret, opt)
	})
}

// formCluster makes the founder with newNode(true, ""), joins n-1 more
// made with newNode(false, secret), the k-th through node k-1 (so joins
// are forwarded to the leader), and waits until every node sees the full
// roster and the voter set has grown to its target.
func formCluster(tb testing.TB, n int, newNode func(founder bool, secret string) *testNode) []*testNode {
	tb.Helper()
	nodes := []*testNode{newNode(true, "")}
	waitFor(tb, 10*time.Second, "the founder to lead and admit itself", func() bool {
		return nodes[0].c.IsLeader() && nodes[0].c.IsMember(nodes[0].id())
	})
	secret := ""
	if n > 1 {
		secret = nodes[0].joinSecret(tb, n-1)
	}
	for i := 1; i < n; i++ {
		nd := newNode(false, secret)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nd.c.Join(ctx, nodes[i-1].info())
		cancel()
		if err != nil {
			tb.Fatalf("node %d join: %v", i, err)
		}
		nodes = append(nodes, nd)
	}
	want := expectedVoters(n, nodes[0].c.cfg.MaxVoters)
	views := func() string {
		var b strings.Builder
		for i, nd := range nodes {
			h, err := nd.c.ChainHead()
			fmt.Fprintf(&b, "\n  node %d %s: kind %s, roster %d, voters %d (configuration %d), leader %v, chain head %d %v",
				i, shortID(nd.id()), nd.c.Kind(), len(nd.c.Roster()), countVoters(nd.c, true), countVoters(nd.c, false),
				nd.c.IsLeader(), h.Index, err)
		}
		return b.String()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, nd := range nodes {
			if len(nd.c.Roster()) != n || countVoters(nd.c, true) != want {
				ok = false
				break
			}
		}
		if ok {
			return nodes
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after 60s waiting for every node to see %d members, %d of them voters:%s", n, want, views())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countVoters counts voters in the configuration, or in the roster.
func countVoters(c *Consensus, roster bool) int {
	v := 0
	for _, m := range c.Members() {
		if m.Suffrage == SuffrageVoter && (!roster || m.Voter) {
			v++
		}
	}
	return v
}

func leaderOf(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if n.c.IsLeader() {
			return n
		}
	}
	return nil
}

func followerOf(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if !n.c.IsLeader() {
			return n
		}
	}
	return nil
}

func hasPolicy(c *Consensus, id string) bool {
	for _, p := range c.Policies(time.Now()) {
		if p.ID == id {
			return true
		}
	}
	return false
}

func TestClusterJoinProposeAndRefuse(t *testing.T) {
	nodes := newCluster(t, 3)

	for _, n := range nodes {
		roster := n.c.Roster()
		for _, m := range roster {
			if !m.Voter || m.AdmittedAt.IsZero() || m.Site == "" || (m.ID != n.id() && len(m.Addrs) == 0) {
				t.Errorf("node %s roster entry %+v: want a voter with site, time and addresses", shortID(n.id()), m)
			}
		}
		if !n.c.IsMember(nodes[2].id()) {
			t.Errorf("node %s does not list the last joiner", shortID(n.id()))
		}
	}
	leader := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	for _, n := range nodes {
		if n.c.Leader() != leader.id() {
			t.Errorf("node %s names leader %q, want %s", shortID(n.id()), n.c.Leader(), leader.id())
		}
	}

	// A proposal from a follower commits and reaches every node.
	f := followerOf(nodes)
	drain(f.c.Changes())
	cmd := proveBlock(t, "203.0.113.50", nodes[0], nodes[1])
	p := *cmd.Policy
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.c.Propose(ctx, cmd); err != nil {
		t.Fatalf("propose from follower: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "the policy on "+shortID(n.id()), func() bool { return hasPolicy(n.c, p.ID) })
	}
	// The notification follows the apply, after the FSM's lock is
	// released: the policy can be seen a moment before it is sent.
	select {
	case <-f.c.Changes():
	case <-time.After(5 * time.Second):
		t.Error("no change notification on the proposing follower")
	}

	// The FSM's refusal on the leader comes back to the follower as the
	// sentinel error.
	if err := f.operate(ctx, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "198.51.100.0/24"}); err != nil {
		t.Fatalf("protect: %v", err)
	}
	badCmd := proveBlock(t, "198.51.100.1", nodes[1], nodes[2])
	bad := *badCmd.Policy
	err := f.c.Propose(ctx, badCmd)
	if !errors.Is(err, ErrProtected) {
		t.Fatalf("block of a protected address from a follower: err %v, want ErrProtected", err)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "the protected range on "+shortID(n.id()), func() bool { return len(n.c.Protected()) == 1 })
		if hasPolicy(n.c, bad.ID) {
			t.Errorf("refused policy present on %s", shortID(n.id()))
		}
	}

	// A joiner with a token the mesh never issued is refused with
	// ErrBadToken, through a follower, promptly.
	unknown, _, err := intel.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	intruder := newTestNode(t, testLogger(t), false, unknown)
	jctx, jcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer jcancel()
	err = intruder.c.Join(jctx, f.info())
	if !errors.Is(err, ErrBadToken) || RefusalReason(err) != "unknown_token" {
		t.Fatalf("join with a wrong token: err %v, want ErrBadToken", err)
	}
	if jctx.Err() != nil {
		t.Fatal("a wrong token should be refused, not retried until the deadline")
	}
	for _, n := range nodes {
		if n.c.IsMember(intruder.id()) || n.c.knownInConfig(intruder.id()) {
			t.Errorf("intruder admitted on %s", shortID(n.id()))
		}
	}

	// A node that is not a member cannot propose through a member.
	data, _ := proveBlock(t, "203.0.113.99", nodes[0], nodes[1]).Encode()
	intruder.h.Peerstore().AddAddrs(f.h.ID(), f.h.Addrs(), time.Minute)
	notMember := f.c.TransportRefusals().Count(string(RPCProtocol), RefusedNotMember)
	err = intruder.c.call(ctx, f.h.ID(), &rpcRequest{Kind: rpcPropose, Command: data})
	if !errors.Is(err, ErrNotMember) {
		t.Fatalf("proposal from a non-member: err %v, want ErrNotMember", err)
	}
	if got := f.c.TransportRefusals().Count(string(RPCProtocol), RefusedNotMember); got != notMember+1 {
		t.Errorf("the non-member's proposal counted %d times as %s, want once", got-notMember, RefusedNotMember)
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestLeaderFailover(t *testing.T) {
	nodes := newCluster(t, 3)
	old := leaderOf(nodes)
	if old == nil {
		t.Fatal("no leader")
	}
	var survivors []*testNode
	for _, n := range nodes {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	if err := old.c.Close(); err != nil {
		t.Fatalf("close leader: %v", err)
	}
	if err := old.c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	_ = old.h.Close()

	waitFor(t, 15*time.Second, "a new leader among the survivors", func() bool {
		l := leaderOf(survivors)
		return l != nil && survivors[0].c.Leader() == l.id() && survivors[1].c.Leader() == l.id()
	})
	// Propose from whichever survivor follows, if one does by now; else from
	// the leader.
	from := followerOf(survivors)
	if from == nil {
		from = survivors[0]
	}
	cmd := proveBlock(t, "192.0.2.200", survivors...)
	p := *cmd.Policy
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := from.c.Propose(ctx, cmd); err != nil {
		t.Fatalf("propose after failover: %v", err)
	}
	for _, n := range survivors {
		waitFor(t, 5*time.Second, "the policy on "+shortID(n.id()), func() bool { return hasPolicy(n.c, p.ID) })
	}
	if s := survivors[0].c.Stats(); s["members"] != "3" || s["state"] == "" {
		t.Errorf("stats: %v", s)
	}
}

func TestProposeHonoursContext(t *testing.T) {
	// A lone node that never joined has no leader: Propose retries until
	// the context ends and says so.
	n := newTestNode(t, testLogger(t), false, "")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cmd := proveBlock(t, "192.0.2.1", n)
	err := n.c.Propose(ctx, cmd)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	if err := n.c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.c.Propose(context.Background(), cmd); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: err %v, want ErrClosed", err)
	}
}

func TestJoinerCatchesUpFromSnapshot(t *testing.T) {
	// The founder compacts its log into a snapshot, so a joiner can only
	// catch up through InstallSnapshot over the libp2p transport and Restore.
	log := testLogger(t)
	small := func(c *Config) { c.SnapshotThreshold, c.TrailingLogs = 4, 1 }
	founder := newTestNodeWith(t, log, true, "", small)
	waitFor(t, 10*time.Second, "the founder to lead and admit itself", func() bool {
		return founder.c.IsLeader() && founder.c.IsMember(founder.id())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ids []string
	for i := range 20 {
		ip := fmt.Sprintf("192.0.2.%d", i+1)
		if err := founder.operate(ctx, blockOp(t, ip, time.Hour)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, intel.PolicyID(intel.ActionBlock, mustIndicator(t, ip)))
	}
	if err := founder.operate(ctx, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if err := founder.c.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	joiner := newTestNodeWith(t, log, false, founder.joinSecret(t, 1), small)
	if err := joiner.c.Join(ctx, founder.info()); err != nil {
		t.Fatalf("join: %v", err)
	}
	waitFor(t, 10*time.Second, "the joiner to hold the founder's state", func() bool {
		return len(joiner.c.Policies(time.Now())) == len(ids) && len(joiner.c.Protected()) == 1 && len(joiner.c.Roster()) == 2
	})
	if s := joiner.c.Stats()["last_snapshot_index"]; s == "" || s == "0" {
		t.Fatalf("joiner's last_snapshot_index = %q: it caught up without installing a snapshot", s)
	}
	for _, id := range ids {
		if !hasPolicy(joiner.c, id) {
			t.Fatalf("policy %s missing on the joiner", id)
		}
	}
}
