package consensus

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/meshward/meshward/intel"
)

// proposeBlock commits a block of ip from n and returns the policy ID.
func proposeBlock(t *testing.T, n *testNode, ip string, d time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return intel.PolicyID(intel.ActionBlock, mustIndicator(t, ip)), n.operate(ctx, blockOp(t, ip, time.Hour))
}

func mustProposeBlock(t *testing.T, n *testNode, ip string) string {
	t.Helper()
	id, err := proposeBlock(t, n, ip, 30*time.Second)
	if err != nil {
		t.Fatalf("propose block of %s from %s: %v", ip, shortID(n.id()), err)
	}
	return id
}

func policyIDs(c *Consensus) []string {
	var ids []string
	for _, p := range c.Policies(time.Now()) {
		ids = append(ids, p.ID)
	}
	return ids
}

func without(nodes []*testNode, drop ...*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if !slices.Contains(drop, n) {
			out = append(out, n)
		}
	}
	return out
}

// waitSamePolicies waits until every node holds exactly want.
func waitSamePolicies(t *testing.T, nodes []*testNode, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	for _, n := range nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("node %s to hold %d policies", shortID(n.id()), len(want)), func() bool {
			return slices.Equal(policyIDs(n.c), want)
		})
	}
}

func waitLeaderAmong(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, 30*time.Second, "a leader that every node names", func() bool {
		l = leaderOf(nodes)
		if l == nil {
			return false
		}
		for _, n := range nodes {
			if n.c.Leader() != l.id() {
				return false
			}
		}
		return true
	})
	return l
}

func TestFiveNodesSurviveLeaderCrashAndRestart(t *testing.T) {
	nodes := newCluster(t, 5)
	before := mustProposeBlock(t, followerOf(nodes), "203.0.113.1")

	old := leaderOf(nodes)
	old.stop(t)
	survivors := without(nodes, old)
	waitLeaderAmong(t, survivors)

	ids := []string{before}
	for i, n := range survivors {
		ids = append(ids, mustProposeBlock(t, n, fmt.Sprintf("203.0.113.%d", 10+i)))
	}
	waitSamePolicies(t, survivors, ids)

	// The old leader comes back with its log and catches up as a voter.
	old.restart(t, survivors)
	waitSamePolicies(t, nodes, ids)
	waitFor(t, 30*time.Second, "the restarted node to follow the leader", func() bool {
		l := leaderOf(nodes)
		return l != nil && old.c.Leader() == l.id()
	})
	if got := countVoters(old.c, false); got != 5 {
		t.Fatalf("restarted node sees %d voters, want 5", got)
	}

	// Refusals still come back as sentinels through the new leader.
	f := followerOf(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.operate(ctx, allowOp(t, "192.0.2.0/24", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := proposeBlock(t, f, "192.0.2.77", 20*time.Second); !errors.Is(err, ErrAllowed) {
		t.Fatalf("block under an allow: err %v, want ErrAllowed", err)
	}
}

// partition cuts every link between a and b on both sides.
func partition(t *testing.T, a, b []*testNode) {
	t.Helper()
	for _, x := range a {
		for _, y := range b {
			if err := x.gater.BlockPeer(y.h.ID()); err != nil {
				t.Fatal(err)
			}
			if err := y.gater.BlockPeer(x.h.ID()); err != nil {
				t.Fatal(err)
			}
			_ = x.h.Network().ClosePeer(y.h.ID())
			_ = y.h.Network().ClosePeer(x.h.ID())
		}
	}
	waitFor(t, 10*time.Second, "the partition to disconnect both sides", func() bool {
		for _, x := range a {
			for _, y := range b {
				if x.h.Network().Connectedness(y.h.ID()) == network.Connected || y.h.Network().Connectedness(x.h.ID()) == network.Connected {
					return false
				}
			}
		}
		return true
	})
}

func heal(t *testing.T, a, b []*testNode) {
	t.Helper()
	for _, x := range a {
		for _, y := range b {
			_ = x.gater.UnblockPeer(y.h.ID())
			_ = y.gater.UnblockPeer(x.h.ID())
		}
	}
	for _, x := range a {
		for _, y := range b {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := x.h.Connect(ctx, y.info()); err != nil {
				t.Logf("reconnect %s-%s: %v", shortID(x.id()), shortID(y.id()), err)
			}
			cancel()
		}
	}
}

func TestPartitionMinorityKeepsStateMajorityCommits(t *testing.T) {
	nodes := newCluster(t, 5)
	var committed []string
	for i := range 3 {
		committed = append(committed, mustProposeBlock(t, nodes[i], fmt.Sprintf("198.51.100.%d", i+1)))
	}
	waitSamePolicies(t, nodes, committed)

	// The minority holds the current leader, which must step down.
	leader := leaderOf(nodes)
	minority := []*testNode{leader, followerOf(nodes)}
	majority := without(nodes, minority...)
	partition(t, minority, majority)

	var refused []string
	for i, n := range minority {
		id, err := proposeBlock(t, n, fmt.Sprintf("198.51.100.%d", 100+i), 1500*time.Millisecond)
		if err == nil {
			t.Fatalf("minority node %s committed a proposal", shortID(n.id()))
		}
		refused = append(refused, id)
		if got := policyIDs(n.c); !slices.Equal(got, slices.Sorted(slices.Values(committed))) {
			t.Fatalf("minority node %s holds %v, want the policies committed before the cut %v", shortID(n.id()), got, committed)
		}
		rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		if _, err := n.c.ReadPolicies(rctx, time.Now()); err == nil {
			t.Errorf("linearizable read succeeded on minority node %s", shortID(n.id()))
		}
		cancel()
	}

	committed = append(committed, mustProposeBlock(t, majority[0], "198.51.100.50"))
	waitSamePolicies(t, majority, committed)

	heal(t, minority, majority)
	waitSamePolicies(t, nodes, committed)
	for _, n := range nodes {
		for _, id := range refused {
			if hasPolicy(n.c, id) {
				t.Errorf("policy %s proposed in the minority appeared on %s", id, shortID(n.id()))
			}
		}
	}
	// The healed cluster commits again from a former minority node.
	id := mustProposeBlock(t, minority[0], "198.51.100.60")
	waitSamePolicies(t, nodes, append(committed, id))
}

func TestDeadVotersReplacedByNonVoters(t *testing.T) {
	if testing.Short() {
		t.Skip("12 nodes")
	}
	opt := func(c *Config) {
		// Twelve nodes share two cores with -race: relax raft, keep the
		// membership decisions quick.
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond, 10*time.Millisecond
		c.PromoteAfter, c.MembershipInterval, c.DeadVoterTimeout = 300*time.Millisecond, 100*time.Millisecond, 1500*time.Millisecond
		c.Standbys = 7 // every node a server
	}
	nodes := newClusterWith(t, 12, opt)
	if got := countVoters(nodes[0].c, false); got != 5 {
		t.Fatalf("%d voters, want 5", got)
	}
	stats := nodes[0].c.Stats()
	if stats["voters"] != "5" || stats["nonvoters"] != "7" {
		t.Fatalf("stats voters=%s nonvoters=%s, want 5 and 7", stats["voters"], stats["nonvoters"])
	}

	// Kill the leader and one other voter.
	leader := leaderOf(nodes)
	var victims []*testNode
	victims = append(victims, leader)
	for _, m := range leader.c.Members() {
		if m.Suffrage == SuffrageVoter && m.ID != leader.id() {
			for _, n := range nodes {
				if n.id() == m.ID {
					victims = append(victims, n)
				}
			}
			break
		}
	}
	for _, v := range victims {
		v.stop(t)
	}
	survivors := without(nodes, victims...)
	dead := map[string]bool{victims[0].id(): true, victims[1].id(): true}

	waitFor(t, 90*time.Second, "five healthy voters again, none of them dead", func() bool {
		l := leaderOf(survivors)
		if l == nil {
			return false
		}
		voters := 0
		for _, m := range l.c.Members() {
			if m.Suffrage != SuffrageVoter {
				continue
			}
			if dead[m.ID] || m.Health != HealthHealthy {
				return false
			}
			voters++
		}
		return voters == 5
	})
	l := leaderOf(survivors)
	if s := l.c.Stats(); s["promotions"] == "0" || s["demotions"] == "0" {
		t.Errorf("leader stats promotions=%s demotions=%s", s["promotions"], s["demotions"])
	}
	// The demoted nodes stay members, as non-voters.
	for _, m := range l.c.Members() {
		if dead[m.ID] && m.Suffrage != SuffrageNonvoter {
			t.Errorf("dead node %s: suffrage %s, want nonvoter", shortID(m.ID), m.Suffrage)
		}
	}
	// Every roster agrees on who votes, and the mesh still commits.
	id := mustProposeBlock(t, survivors[len(survivors)-1], "203.0.113.200")
	waitSamePolicies(t, survivors, []string{id})
	for _, n := range survivors {
		waitFor(t, 20*time.Second, "roster voter flags to match", func() bool { return countVoters(n.c, true) == 5 })
	}
}

func TestRemoveMemberAndLeave(t *testing.T) {
	nodes := newClusterWith(t, 4, func(c *Config) { c.MaxVoters = 3 })
	var nonvoter *testNode
	for _, m := range nodes[0].c.Members() {
		if m.Suffrage == SuffrageNonvoter {
			for _, n := range nodes {
				if n.id() == m.ID {
					nonvoter = n
				}
			}
		}
	}
	if nonvoter == nil {
		t.Fatal("no non-voter among 4 nodes with MaxVoters 3")
	}
	gone := func(id string, on []*testNode) func() bool {
		return func() bool {
			for _, n := range on {
				if n.c.IsMember(id) || n.c.knownInConfig(id) {
					return false
				}
			}
			return true
		}
	}
	// An operator removes the non-voter through some follower.
	f := followerOf(without(nodes, nonvoter))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	remove := intel.OperatorCommand{Op: intel.OpRemoveMember, Member: nonvoter.id()}
	if err := f.operate(ctx, remove); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	rest := without(nodes, nonvoter)
	waitFor(t, 20*time.Second, "the removed node to vanish everywhere", gone(nonvoter.id(), rest))
	if err := f.operate(ctx, remove); err != nil {
		t.Fatalf("removing an absent member: %v", err)
	}

	// The leader leaves gracefully: it hands over first.
	leader := leaderOf(rest)
	if err := leader.c.Leave(ctx); err != nil {
		t.Fatalf("leader leave: %v", err)
	}
	rest = without(rest, leader)
	waitFor(t, 20*time.Second, "the departed leader to vanish everywhere", gone(leader.id(), rest))
	id := mustProposeBlock(t, rest[0], "203.0.113.33")
	waitSamePolicies(t, rest, []string{id})

	// A lone voter cannot leave.
	solo := newTestNode(t, testLogger(t), true, "")
	waitFor(t, 10*time.Second, "the solo node to lead", func() bool { return solo.c.IsLeader() && solo.c.IsMember(solo.id()) })
	if err := solo.c.Leave(ctx); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("lone voter leave: err %v, want ErrLastVoter", err)
	}
}

func TestFSMMemberAddressesAreProtected(t *testing.T) {
	a := newApplier(t)
	a.needToken()
	id := intel.NodeID(seededKey("node-a").Public().(ed25519.PublicKey))
	// Observed addresses, not the listen addresses the node reports, are
	// protected; loopback and link-local are recorded but not protected.
	admit := joinAdmit(id, t0, "203.0.113.9/32", "127.0.0.1/32", "2001:db8::1/128", "fe80::1/128")
	admit.Member.Addrs = []string{"/ip4/198.51.100.77/tcp/4001", "/dns4/mesh.example.com/tcp/4001"}
	a.mustApply(admit)
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.9/32"), netip.MustParsePrefix("2001:db8::1/128")}
	if got := a.f.protectedPrefixes(); !slices.Equal(got, want) {
		t.Fatalf("protected %v, want %v", got, want)
	}
	if m, _ := a.f.member(id); m.Token != intel.JoinTokenID(testJoinKey().Public().(ed25519.PublicKey)) ||
		m.AdmittedBy != intel.OperatorKeyID(testOperatorKey.Public().(ed25519.PublicKey)) || m.Voter {
		t.Fatalf("roster entry %+v: want the token and its operator recorded, a non-voter", m)
	}
	err := a.apply(a.op(blockOp(t, "203.0.113.9", time.Hour), t0))
	if !errors.Is(err, ErrProtected) || !strings.Contains(err.Error(), "mesh member address 203.0.113.9") {
		t.Fatalf("block of a member address: err %v, want ErrProtected naming it", err)
	}
	a.mustApply(a.op(blockOp(t, "198.51.100.77", time.Hour), t0)) // a self-reported address
	// Survives snapshot and restore.
	b := newApplier(t)
	b.f.mustRestore(t, snapshotBytes(t, a.f))
	if got := b.f.protectedPrefixes(); !slices.Equal(got, want) {
		t.Fatalf("restored protected %v, want %v", got, want)
	}
	// Once an operator removes the member its address may be blocked again.
	a.mustApply(a.op(intel.OperatorCommand{Op: intel.OpRemoveMember, Member: id}, t0))
	if got := a.f.protectedPrefixes(); len(got) != 0 {
		t.Fatalf("protected after removal: %v", got)
	}
	a.mustApply(a.op(blockOp(t, "203.0.113.9", time.Hour), t0))

	// An admission observed under an active block is refused, and lifts
	// nothing; one observed on loopback is not (loopback is never
	// protected, so it cannot lift a block).
	other := intel.NodeID(seededKey("node-b").Public().(ed25519.PublicKey))
	a.mustApply(a.op(blockOp(t, "192.0.2.0/24", time.Hour), t0))
	before := fsmBytes(t, a.f)
	if err := a.apply(joinAdmit(other, t0, "127.0.0.1/32", "192.0.2.44/32")); RefusalReason(err) != "collides_with_block" {
		t.Fatalf("admission under a block: err %v, want collides_with_block", err)
	}
	for name, obs := range map[string][]string{
		"none": {}, "a range": {"192.0.2.0/24"}, "unspecified": {"0.0.0.0/32"}, "multicast": {"224.0.0.1/32"},
		"not canonical": {"2001:DB8::1/128"}, "mapped": {"::ffff:192.0.2.1/128"}, "junk": {"not an address"},
	} {
		c := joinAdmit(other, t0)
		c.Member.Observed = obs
		if err := a.apply(c); RefusalReason(err) != "bad_observed" {
			t.Errorf("observed %s: err %v, want bad_observed", name, err)
		}
	}
	if after := fsmBytes(t, a.f); !bytes.Equal(before, after) {
		t.Fatal("refused admissions changed the state")
	}
	a.mustApply(joinAdmit(other, t0, "127.0.0.1/32"))
	if len(a.f.activePolicies(t0)) != 3 {
		t.Fatalf("policies after a loopback admission: %+v", a.f.activePolicies(t0))
	}
}
