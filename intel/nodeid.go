package intel

import (
	"crypto/ed25519"
	"math/big"
)

// NodeID returns the node ID for an ed25519 public key: the libp2p peer ID
// string of that key ("12D3KooW..."), so that the signer of an envelope, the
// GossipSub author and the Raft server ID all name a node the same way.
func NodeID(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	// identity multihash (code 0x00, length 36) of the protobuf PublicKey
	// message {1: KeyType Ed25519 (1), 2: 32 key bytes}.
	b := make([]byte, 0, 38)
	b = append(b, 0x00, 36, 0x08, 0x01, 0x12, 32)
	b = append(b, pub...)
	return base58(b)
}

const b58alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func base58(b []byte) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	n := new(big.Int).SetBytes(b)
	var out []byte
	mod, base := new(big.Int), big.NewInt(58)
	for n.Sign() > 0 {
		n.DivMod(n, base, mod)
		out = append(out, b58alphabet[mod.Int64()])
	}
	for range zeros {
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}
