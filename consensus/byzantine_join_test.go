package consensus

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// Admission attacks. Each is replayed as the admission entry a joiner's
// join would make the leader write (through a member's propose RPC and
// straight into the leader's log: attack), and, where a real node can
// make it, as a real join through a follower. Every one is refused with
// its reason, counted on every node, and changes no node's roster,
// tokens or protected addresses.

// proofAdmit is the admission of node, proven with the join token secret
// for mesh, observed at observed (127.0.0.1/32 when none is given).
func proofAdmit(tb testing.TB, secret, mesh, node string, observed ...string) Command {
	tb.Helper()
	key, err := intel.JoinTokenKey(secret)
	if err != nil {
		tb.Fatal(err)
	}
	if len(observed) == 0 {
		observed = []string{"127.0.0.1/32"}
	}
	return Command{Type: CmdAdmit, At: time.Now().UTC(), Member: &Member{ID: node, Site: "sybil", Observed: observed},
		Join: &JoinProof{TokenKey: key.Public().(ed25519.PublicKey), Sig: intel.SignJoin(key, mesh, node)}}
}

// strangerID is the node ID of a fresh key that is on no roster.
func strangerID(tb testing.TB) string {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return intel.NodeID(pub)
}

// joinRefused has a fresh node join through a follower with secret and
// checks that it is refused promptly with ErrBadToken and reason, that
// the follower counted the failed attempt, and that no node admitted it.
func joinRefused(t *testing.T, nodes []*testNode, secret, reason string) {
	t.Helper()
	f := followerOf(nodes)
	refused := f.c.TransportRefusals()
	counted := refused.Count(string(RPCProtocol), "join_"+reason)
	sybil := newTestNode(t, testLogger(t), false, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := sybil.c.Join(ctx, f.info())
	if !errors.Is(err, ErrBadToken) || RefusalReason(err) != reason {
		t.Fatalf("join: err %v (reason %q), want ErrBadToken with reason %q", err, RefusalReason(err), reason)
	}
	if ctx.Err() != nil {
		t.Fatal("a refused join should be answered, not retried until the deadline")
	}
	if got := refused.Count(string(RPCProtocol), "join_"+reason); got <= counted {
		t.Errorf("the follower counted join_%s %d times, want more than %d", reason, got, counted)
	}
	for _, n := range nodes {
		if n.c.IsMember(sybil.id()) || n.c.knownInConfig(sybil.id()) {
			t.Errorf("the sybil is admitted on %s", shortID(n.id()))
		}
	}
}

func TestByzantineJoinUsedToken(t *testing.T) {
	nodes := byzantineCluster(t)
	secret := nodes[0].joinSecret(t, 1)
	// The token's one use admits one node...
	first := newTestNode(t, testLogger(t), false, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.c.Join(ctx, followerOf(nodes).info()); err != nil {
		t.Fatalf("the token's first join: %v", err)
	}
	nodes = append(nodes, first)
	waitFor(t, 20*time.Second, "every node to see the first joiner", func() bool {
		for _, n := range nodes {
			if !n.c.IsMember(first.id()) {
				return false
			}
		}
		return true
	})
	// ...and no second one: a real join, and the entry a leader would write.
	joinRefused(t, nodes, secret, "token_used")
	attack(t, nodes, proofAdmit(t, secret, nodes[0].c.MeshID(), strangerID(t)), "token_used")
	// The member records the token that admitted it and who created it.
	m, _ := nodes[0].c.fsm.member(first.id())
	if m.Token == "" || m.AdmittedBy != intel.OperatorKeyID(testOperatorKey.Public().(ed25519.PublicKey)) || len(m.Observed) == 0 {
		t.Errorf("the first joiner's roster entry %+v: want its token, the operator and where it was observed", m)
	}
}

func TestByzantineJoinExpiredToken(t *testing.T) {
	nodes := byzantineCluster(t)
	secret, pub, err := intel.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[0].operate(ctx, intel.OperatorCommand{Op: intel.OpCreateJoinToken, TokenKey: pub, TokenUses: 5, TokenTTLSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	tok := nodes[0].c.JoinTokens()
	var expires time.Time
	for _, tk := range tok {
		if tk.ID == intel.JoinTokenID(pub) {
			expires = tk.Expires
		}
	}
	waitFor(t, 10*time.Second, "the token to expire", func() bool { return time.Now().After(expires) })
	joinRefused(t, nodes, secret, "token_expired")
	attack(t, nodes, proofAdmit(t, secret, nodes[0].c.MeshID(), strangerID(t)), "token_expired")
}

func TestByzantineJoinForgedProofs(t *testing.T) {
	nodes := byzantineCluster(t)
	secret := nodes[0].joinSecret(t, 5)
	mesh := nodes[0].c.MeshID()
	id := strangerID(t)

	// Signed by a key that is not the token's, presented with the token's
	// public key.
	forged := proofAdmit(t, secret, mesh, id)
	_, other, _ := ed25519.GenerateKey(nil)
	forged.Join.Sig = intel.SignJoin(other, mesh, id)
	attack(t, nodes, forged, "bad_proof")

	// A token of the attacker's own, which no operator created.
	own, _, err := intel.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	attack(t, nodes, proofAdmit(t, own, mesh, id), "unknown_token")
	joinRefused(t, nodes, own, "unknown_token")

	// A valid proof made for another node ID.
	stolen := proofAdmit(t, secret, mesh, strangerID(t))
	stolen.Member.ID = id
	attack(t, nodes, stolen, "bad_proof")

	// A valid proof for another mesh.
	attack(t, nodes, proofAdmit(t, secret, "ffeeddccbbaa99887766554433221100", id), "bad_proof")

	// No token use was spent by any of them.
	for _, n := range nodes {
		for _, tk := range n.c.JoinTokens() {
			if tk.Uses == 5 && tk.Used != 0 {
				t.Errorf("node %s: token %s used %d times", shortID(n.id()), tk.ID, tk.Used)
			}
		}
	}
}

// A member writes the admission of a stranger on its own word: through
// the propose RPC and straight into the leader's log.
func TestByzantineAdmitWithoutProof(t *testing.T) {
	nodes := byzantineCluster(t)
	id := strangerID(t)
	attack(t, nodes, Command{Type: CmdAdmit, At: time.Now().UTC(), Member: &Member{ID: id, Site: "stranger", Voter: true,
		Observed: []string{"198.51.100.7/32"}}}, "no_proof")
	// Nor may an existing member be admitted again, spending a use, or its
	// entry changed by a voter-flag admit.
	secret := nodes[0].joinSecret(t, 1)
	attack(t, nodes, proofAdmit(t, secret, nodes[0].c.MeshID(), nodes[1].id()), "already_member")
	m, _ := nodes[0].c.fsm.member(nodes[1].id())
	m.Observed = []string{"198.51.100.8/32"}
	data := voterCommand(m, m.Voter)
	attackRaw(t, nodes, CmdAdmit, data, "admit_changes_member")
}

// An admission whose observed address lies under an active block is
// refused: admitting a node never lifts a block.
func TestByzantineJoinCollidesWithBlock(t *testing.T) {
	nodes := byzantineCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[0].operate(ctx, blockOp(t, "192.0.2.0/24", time.Hour)); err != nil {
		t.Fatal(err)
	}
	secret := nodes[0].joinSecret(t, 2)
	mesh := nodes[0].c.MeshID()
	attack(t, nodes, proofAdmit(t, secret, mesh, strangerID(t), "127.0.0.1/32", "192.0.2.44/32"), "collides_with_block")
	attack(t, nodes, proofAdmit(t, secret, mesh, strangerID(t), "192.0.2.0/24"), "bad_observed")
	attack(t, nodes, proofAdmit(t, secret, mesh, strangerID(t), "0.0.0.0/32"), "bad_observed")
	for _, n := range nodes {
		if !hasPolicy(n.c, intel.PolicyID(intel.ActionBlock, mustIndicator(t, "192.0.2.0/24"))) {
			t.Errorf("node %s lost the block", shortID(n.id()))
		}
	}
}

// One peer floods a member with join attempts: beyond the burst they are
// refused before any work, counted, and admit nothing.
func TestByzantineJoinFloodRateLimited(t *testing.T) {
	nodes := byzantineCluster(t)
	f := followerOf(nodes)
	flooder := newTestHost(t, newKey(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := flooder.Connect(ctx, f.info()); err != nil {
		t.Fatal(err)
	}
	own, _, err := intel.NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	refused := f.c.TransportRefusals()
	before := make([][]byte, len(nodes))
	for i, n := range nodes {
		before[i] = fsmState(t, n.c)
	}
	limited := 0
	const attempts = 20
	for i := range attempts {
		req := joinRequest(t, own, f.c.MeshID(), flooder.ID().String(), 0)
		if i%2 == 0 {
			req = rpcRequest{Kind: rpcJoinInfo, Node: flooder.ID().String()}
		}
		if _, err := callPeer(ctx, flooder, f.h.ID(), &req); errors.Is(err, ErrRateLimited) {
			limited++
		} else if req.Kind == rpcJoin && RefusalReason(err) != "unknown_token" {
			t.Fatalf("attempt %d: %v, want a rate limit or unknown_token", i, err)
		}
	}
	// The budget is joinBurst at once and joinRate a second after.
	if limited < attempts-joinBurst-2 {
		t.Errorf("%d of %d attempts rate-limited, want at least %d", limited, attempts, attempts-joinBurst-2)
	}
	if got := refused.Count(string(RPCProtocol), RefusedJoinRateLimited); got != uint64(limited) {
		t.Errorf("counted %d rate-limited attempts, want %d", got, limited)
	}
	for i, n := range nodes {
		if n.c.IsMember(flooder.ID().String()) || string(fsmState(t, n.c)) != string(before[i]) {
			t.Errorf("node %s changed by the flood", shortID(n.id()))
		}
	}
	// Another peer is not limited by the flooder's budget.
	other := newTestHost(t, newKey(t), nil)
	if err := other.Connect(ctx, f.info()); err != nil {
		t.Fatal(err)
	}
	if _, err := callPeer(ctx, other, f.h.ID(), &rpcRequest{Kind: rpcJoinInfo, Node: other.ID().String()}); err != nil {
		t.Fatalf("another peer's join_info: %v", err)
	}
}

// The per-peer buckets stay bounded however many peers try.
func TestJoinLimiterBounded(t *testing.T) {
	var l joinLimiter
	now := time.Now()
	for i := range maxJoinLimiters + 100 {
		l.allow(peerIDFor(t, i), now)
	}
	if len(l.buckets) > maxJoinLimiters {
		t.Fatalf("%d buckets, limit %d", len(l.buckets), maxJoinLimiters)
	}
	p := peerIDFor(t, -1)
	for range joinBurst {
		if !l.allow(p, now) {
			t.Fatal("a fresh peer's burst refused")
		}
	}
	if l.allow(p, now) {
		t.Fatal("an attempt beyond the burst allowed")
	}
	if !l.allow(p, now.Add(time.Second/joinRate)) {
		t.Fatal("an attempt after the refill refused")
	}
}

// peerIDFor is a distinct, deterministic peer ID for i.
func peerIDFor(tb testing.TB, i int) peer.ID {
	tb.Helper()
	id, err := peer.Decode(intel.NodeID(seededKey(fmt.Sprintf("limiter-%d", i)).Public().(ed25519.PublicKey)))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
