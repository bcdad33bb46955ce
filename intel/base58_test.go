package intel

import (
	"crypto/ed25519"
	"crypto/sha256"
	"math/big"
	"testing"
)

// bigBase58 is the textbook encoding through big.Int, the reference for
// base58.
func bigBase58(b []byte) string {
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

func TestBase58MatchesBigInt(t *testing.T) {
	cases := [][]byte{nil, {0}, {0, 0}, {0, 0, 1}, {57}, {58}, {255}, {1, 0}, {0xff, 0xff, 0xff, 0xff}}
	for i := range 2000 {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		b := append([]byte(nil), h[:i%33]...)
		for j := range i % 4 {
			if j < len(b) {
				b[j] = 0
			}
		}
		cases = append(cases, b, append([]byte{0x00, 36, 0x08, 0x01, 0x12, 32}, h[:]...))
	}
	for _, b := range cases {
		if got, want := base58(b), bigBase58(b); got != want {
			t.Fatalf("base58(%x) = %q, want %q", b, got, want)
		}
	}
}

func BenchmarkNodeID(b *testing.B) {
	pub := cacheTestKey("a").Public().(ed25519.PublicKey)
	for b.Loop() {
		_ = NodeID(pub)
	}
}
