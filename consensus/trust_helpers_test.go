package consensus

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// testOperatorKey is the admin operator of every test mesh.
var testOperatorKey = seededKey("operator")

// seededKey is a deterministic ed25519 key, so that FSM tests replay the
// same bytes every run.
func seededKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("meshward test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testMeshID is the mesh ID of the FSM tests' meshes.
const testMeshID = "00112233445566778899aabbccddeeff"

func bootstrapOperatorText(priv ed25519.PrivateKey) string {
	return intel.FormatOperatorPublicKey(priv.Public().(ed25519.PublicKey)) + " test-admin"
}

var nonceSeq atomic.Uint64

// testNonce is a fresh nonce: random in cluster tests (several meshes
// may share a key), deterministic enough in FSM tests since only
// uniqueness matters.
func testNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// signOp signs cmd with priv for mesh, issued at at.
func signOp(tb testing.TB, priv ed25519.PrivateKey, mesh string, at time.Time, cmd intel.OperatorCommand) intel.OperatorSigned {
	tb.Helper()
	cmd.Header = intel.OperatorHeader{Mesh: mesh, Nonce: testNonce(), Issued: at, Expires: at.Add(10 * time.Minute)}
	s, err := intel.SignOperatorCommand(priv, cmd)
	if err != nil {
		tb.Fatalf("sign %s: %v", cmd.Op, err)
	}
	return s
}

func opCmd(s intel.OperatorSigned, at time.Time) Command {
	return Command{Type: CmdOperator, At: at, Operator: &s}
}

func blockOp(tb testing.TB, ind string, ttl time.Duration) intel.OperatorCommand {
	i := mustIndicator(tb, ind)
	return intel.OperatorCommand{Op: intel.OpBlock, Indicator: &i, TTLSeconds: int64(ttl / time.Second), Reason: "test"}
}

func allowOp(tb testing.TB, ind string, ttl time.Duration) intel.OperatorCommand {
	i := mustIndicator(tb, ind)
	return intel.OperatorCommand{Op: intel.OpAllow, Indicator: &i, TTLSeconds: int64(ttl / time.Second), Reason: "test"}
}

// sealSighting seals a sighting of ind by key, sent at sent.
func sealSighting(tb testing.TB, key ed25519.PrivateKey, seq uint64, ind intel.Indicator, sent time.Time) []byte {
	tb.Helper()
	s := intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Confidence: 80, Count: 5,
		FirstSeen: sent.Add(-time.Minute), LastSeen: sent}
	b, err := intel.SealJSON(key, intel.KindSighting, seq, sent, s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// autoBlock is an automatic block of ind created at at, carrying the
// given proofs.
func autoBlock(tb testing.TB, ind string, at time.Time, ttl time.Duration, proofs ...[]byte) Command {
	p := intel.NewPolicy(intel.ActionBlock, mustIndicator(tb, ind), "corroborated", "node", at, ttl)
	return Command{Type: CmdPutPolicy, At: at, Policy: &p, Proofs: proofs}
}

// --- cluster helpers --------------------------------------------------------

// operate signs cmd for n's mesh and proposes it through n.
func (n *testNode) operate(ctx context.Context, cmd intel.OperatorCommand) error {
	now := time.Now().UTC()
	cmd.Header = intel.OperatorHeader{Mesh: n.c.MeshID(), Nonce: testNonce(), Issued: now, Expires: now.Add(10 * time.Minute)}
	s, err := intel.SignOperatorCommand(testOperatorKey, cmd)
	if err != nil {
		return err
	}
	return n.c.ProposeOperator(ctx, s)
}

// edKey is the node's ed25519 private key (its envelope signer).
func (n *testNode) edKey(tb testing.TB) ed25519.PrivateKey {
	raw, err := n.key.Raw()
	if err != nil {
		tb.Fatal(err)
	}
	return ed25519.PrivateKey(raw)
}

var proofSeq atomic.Uint64

// proveBlock is an automatic block of ind, created now, proven by a fresh
// sighting signed by each of by.
func proveBlock(tb testing.TB, ind string, by ...*testNode) Command {
	tb.Helper()
	now := time.Now().UTC()
	i := mustIndicator(tb, ind)
	var proofs [][]byte
	for _, n := range by {
		proofs = append(proofs, sealSighting(tb, n.edKey(tb), proofSeq.Add(1), i, now))
	}
	return autoBlock(tb, ind, now, time.Hour, proofs...)
}

type ed25519PublicKey = ed25519.PublicKey

// sealSightingLastSeen seals a sighting by n sent at sent that claims it
// was last seen at last.
func sealSightingLastSeen(tb testing.TB, n *testNode, ind intel.Indicator, sent, last time.Time) []byte {
	tb.Helper()
	s := intel.Sighting{Indicator: ind, Detector: "ssh-bruteforce", Confidence: 80, Count: 5, FirstSeen: sent.Add(-time.Minute), LastSeen: last}
	b, err := intel.SealJSON(n.edKey(tb), intel.KindSighting, proofSeq.Add(1), sent, s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// revokeAll revokes the first active policy c holds.
func revokeAll(c *Consensus) intel.OperatorCommand {
	ps := c.Policies(time.Now())
	id := "0000000000000000"
	if len(ps) > 0 {
		id = ps[0].ID
	}
	return intel.OperatorCommand{Op: intel.OpRevoke, PolicyID: id}
}

// testJoinSecret is the join token secret of the FSM tests' meshes
// (created in them by createTokenCmd).
const testJoinSecret = "mwjoin_test-join-token-secret-for-fsm-tests"

func testJoinKey() ed25519.PrivateKey {
	k, err := intel.JoinTokenKey(testJoinSecret)
	if err != nil {
		panic(err)
	}
	return k
}

// createTokenCmd is the test admin's command creating the test join
// token for testMeshID with uses, at at, valid for 30 days.
func createTokenCmd(tb testing.TB, at time.Time, uses int) Command {
	return opCmd(signOp(tb, testOperatorKey, testMeshID, at, intel.OperatorCommand{Op: intel.OpCreateJoinToken,
		TokenKey: testJoinKey().Public().(ed25519.PublicKey), TokenUses: uses, TokenTTLSeconds: int64(intel.MaxJoinTokenTTL / time.Second)}), at)
}

// joinAdmit is the admission of node id at at, proven with the test join
// token for testMeshID, observed at observed (127.0.0.1/32 when none is
// given: recorded, never protected).
func joinAdmit(id string, at time.Time, observed ...string) Command {
	if len(observed) == 0 {
		observed = []string{"127.0.0.1/32"}
	}
	return Command{Type: CmdAdmit, At: at, Member: &Member{ID: id, Site: "site-" + id[len(id)-4:], Observed: observed},
		Join: &JoinProof{TokenKey: testJoinKey().Public().(ed25519.PublicKey), Sig: intel.SignJoin(testJoinKey(), testMeshID, id)}}
}

// joinSecret has n's operator create a join token for uses joins, valid
// for an hour, and returns its secret.
func (n *testNode) joinSecret(tb testing.TB, uses int) string {
	tb.Helper()
	secret, pub, err := intel.NewJoinToken()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.operate(ctx, intel.OperatorCommand{Op: intel.OpCreateJoinToken, TokenKey: pub, TokenUses: uses, TokenTTLSeconds: 3600}); err != nil {
		tb.Fatalf("create a join token: %v", err)
	}
	return secret
}
