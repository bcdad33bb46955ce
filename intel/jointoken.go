package intel

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// Join tokens admit new nodes. An operator creates one (an operator-signed
// create_join_token command); the secret goes to the joining node's
// operator, and the mesh keeps only the public half of a key derived from
// it. The joiner proves it holds the secret by signing its own node ID and
// the mesh's ID with that key, so the log entry that admits it carries a
// proof any replica can check, and which admits no other node.

// ErrJoinToken is wrapped by every join token error.
var ErrJoinToken = errors.New("join token")

// JoinSigningDomain separates join proofs from every other signature.
const JoinSigningDomain = "meshward/join/v1\x00"

// joinTokenPrefix starts every generated secret.
const joinTokenPrefix = "mwjoin_"

// NewJoinToken makes a fresh join token: the secret to hand to the joiner
// and the public key the mesh keeps.
func NewJoinToken() (secret string, pub ed25519.PublicKey, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrJoinToken, err)
	}
	secret = joinTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	priv, err := JoinTokenKey(secret)
	if err != nil {
		return "", nil, err
	}
	return secret, priv.Public().(ed25519.PublicKey), nil
}

// JoinTokenKey derives the token's key from its secret. Secrets shorter
// than MinJoinTokenSecret bytes are refused.
func JoinTokenKey(secret string) (ed25519.PrivateKey, error) {
	if len(secret) < MinJoinTokenSecret {
		return nil, fmt.Errorf("%w: the secret is %d bytes, at least %d are required (make one with `meshward token create --join`)",
			ErrJoinToken, len(secret), MinJoinTokenSecret)
	}
	seed := sha256.Sum256([]byte(JoinSigningDomain + "key\x00" + secret))
	return ed25519.NewKeyFromSeed(seed[:]), nil
}

// JoinTokenID is the short name of a token's public key.
func JoinTokenID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return "jt:" + fmt.Sprintf("%x", h[:8])
}

func joinMessage(mesh, nodeID string) []byte {
	return []byte(JoinSigningDomain + mesh + "\x00" + nodeID)
}

// SignJoin proves that the holder of the token's secret asks to admit
// nodeID into mesh.
func SignJoin(priv ed25519.PrivateKey, mesh, nodeID string) []byte {
	return ed25519.Sign(priv, joinMessage(mesh, nodeID))
}

// VerifyJoin checks a join proof made by SignJoin.
func VerifyJoin(pub ed25519.PublicKey, mesh, nodeID string, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed proof", ErrJoinToken)
	}
	if !ed25519.Verify(pub, joinMessage(mesh, nodeID), sig) {
		return fmt.Errorf("%w: proof does not verify for node %s", ErrJoinToken, nodeID)
	}
	return nil
}
