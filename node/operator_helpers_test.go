package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// testOperatorKey is the admin operator of the test meshes founded here.
var testOperatorKey = func() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("meshward node test operator"))
	return ed25519.NewKeyFromSeed(seed[:])
}()

// testBootstrapOperators is the consensus.bootstrap_operators entry of
// testOperatorKey.
func testBootstrapOperators() []string {
	return []string{intel.FormatOperatorPublicKey(testOperatorKey.Public().(ed25519.PublicKey)) + " test-admin"}
}

// signOperator signs cmd for n's mesh with the test operator.
func signOperator(t *testing.T, n *Node, cmd intel.OperatorCommand) intel.OperatorSigned {
	t.Helper()
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	cmd.Header = intel.OperatorHeader{Mesh: n.Consensus().MeshID(), Nonce: hex.EncodeToString(nonce), Issued: now, Expires: now.Add(10 * time.Minute)}
	s, err := intel.SignOperatorCommand(testOperatorKey, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
