package intel

import "crypto/ed25519"

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

// base58 encodes b in the Bitcoin alphabet, as libp2p prints peer IDs:
// one '1' per leading zero byte, then the rest as a base-58 number. The
// number is kept in limbs of five base-58 digits and multiplied in place
// (no big.Int): node IDs are computed for every proof an FSM checks.
func base58(b []byte) string {
	const limb = 58 * 58 * 58 * 58 * 58 // 656,356,768 < 2^32
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	// log(256)/log(58^5) < 0.28: limbs enough for the number, least
	// significant first.
	limbs := make([]uint32, 0, (len(b)-zeros)*28/100+1)
	for _, c := range b[zeros:] {
		carry := uint64(c)
		for i := range limbs {
			carry += uint64(limbs[i]) << 8
			limbs[i] = uint32(carry % limb)
			carry /= limb
		}
		for carry > 0 {
			limbs = append(limbs, uint32(carry%limb))
			carry /= limb
		}
	}
	digits := make([]byte, 0, 5*len(limbs))
	for _, l := range limbs {
		for range 5 {
			digits = append(digits, byte(l%58))
			l /= 58
		}
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1] // the top limb's leading zeros
	}
	out := make([]byte, zeros+len(digits))
	for i := range zeros {
		out[i] = '1'
	}
	for i, d := range digits {
		out[len(out)-1-i] = b58alphabet[d]
	}
	return string(out)
}
