package intel

import (
	"compress/gzip"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

type sigCase struct {
	name          string
	pub, msg, sig []byte
}

// edgeCases loads the ed25519 edge-case vectors of testdata/ed25519.
func edgeCases(t testing.TB) []sigCase {
	t.Helper()
	read := func(name string, v any) {
		f, err := os.Open(filepath.Join("testdata", "ed25519", name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		z, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := json.NewDecoder(z).Decode(v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	unhex := func(name, s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	}
	var out []sigCase
	var spec []struct{ Message, Pub_key, Signature string }
	read("speccheck_cases.json.gz", &spec)
	for i, c := range spec {
		name := "speccheck/" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		out = append(out, sigCase{name, unhex(name, c.Pub_key), unhex(name, c.Message), unhex(name, c.Signature)})
	}
	var zip [][2]string
	read("zip215.json.gz", &zip)
	for i, c := range zip {
		name := "zip215/" + hex.EncodeToString([]byte{byte(i >> 8), byte(i)})
		out = append(out, sigCase{name, unhex(name, c[0]), []byte("Zcash"), unhex(name, c[1])})
	}
	var vec []struct{ A, R, S, M string }
	read("ed25519vectors.json.gz", &vec)
	for i, c := range vec {
		name := "ed25519vectors/" + hex.EncodeToString([]byte{byte(i >> 8), byte(i)})
		out = append(out, sigCase{name, unhex(name, c.A), []byte(c.M), append(unhex(name, c.R), unhex(name, c.S)...)})
	}
	return out
}

// The verifier a VerifyCache uses accepts exactly what crypto/ed25519
// accepts on every edge case (small-order and mixed-order A and R,
// non-canonical A, R and S, signatures valid only under the cofactored
// equation), whether the signer's expanded key is new or already held.
func TestSignerKeysAgreeWithCryptoEd25519(t *testing.T) {
	cases := edgeCases(t)
	if len(cases) < 100 {
		t.Fatalf("%d edge cases loaded", len(cases))
	}
	accepted, differ := 0, 0
	for _, c := range cases {
		if len(c.pub) != ed25519.PublicKeySize || len(c.sig) != ed25519.SignatureSize {
			t.Fatalf("%s: key of %d bytes, signature of %d", c.name, len(c.pub), len(c.sig))
		}
		want := ed25519.Verify(c.pub, c.msg, c.sig)
		if want {
			accepted++
		}
		// The cases have teeth: on some, voi's default (cofactored) rules
		// answer otherwise.
		if voi.VerifyWithOptions(voi.PublicKey(c.pub), c.msg, c.sig, &voi.Options{Verify: voi.VerifyOptionsDefault}) != want {
			differ++
		}
		var cold signerKeys
		cold.init(16)
		if _, got := cold.verify(c.pub, c.msg, c.sig); got != want {
			t.Errorf("%s: new signer: verify says %v, crypto/ed25519 %v", c.name, got, want)
		}
		// The same with the key already expanded and held, as it is once
		// the signer has signed anything valid.
		ek, err := voi.NewExpandedPublicKey(voi.PublicKey(c.pub))
		if err != nil {
			continue
		}
		var warm signerKeys
		warm.init(16)
		s := &warm.shards[c.pub[ed25519.PublicKeySize-1]%verifyCacheShards]
		s.m[[ed25519.PublicKeySize]byte(c.pub)] = signer{key: ek, id: NodeID(c.pub)}
		if _, got := warm.verify(c.pub, c.msg, c.sig); got != want {
			t.Errorf("%s: held signer: verify says %v, crypto/ed25519 %v", c.name, got, want)
		}
	}
	t.Logf("%d cases, %d accepted by crypto/ed25519, %d on which cofactored rules differ", len(cases), accepted, differ)
	if accepted == 0 || accepted == len(cases) || differ == 0 {
		t.Fatalf("the cases do not tell verifiers apart: %d of %d accepted, %d differ", accepted, len(cases), differ)
	}
}

// Envelopes on the edges open through a VerifyCache exactly as through
// Open: a signer whose key is the identity point (small order; whose
// "signature" anyone can make) is accepted by both, and a signature
// whose S is not reduced (S+L) is refused by both, also once the signer's
// key is held.
func TestVerifyCacheEdgeEnvelopes(t *testing.T) {
	// Identity key: R = [0]B - [k]I = I, so R = I, S = 0 verifies.
	identity := make([]byte, 32)
	identity[0] = 1
	body := make([]byte, headerSize, headerSize+sigSize)
	body[0], body[1] = Version, byte(KindHeartbeat)
	copy(body[2:34], identity)
	body[41] = 1 // seq 1
	forged := append(append(body, identity...), make([]byte, 32)...)

	key := cacheTestKey("edge")
	good := sealTestSighting(t, key, 1)
	// S + L, the same signature in a non-canonical encoding.
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	sig := good[len(good)-32:]
	s := new(big.Int).SetBytes(reversed(sig))
	s.Add(s, l)
	nonCanonical := append([]byte(nil), good...)
	copy(nonCanonical[len(good)-32:], reversed(s.FillBytes(make([]byte, 32))))

	c := NewVerifyCache(64)
	for _, tc := range []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"identity key", forged, true},
		{"non-canonical S, signer new", nonCanonical, false},
		{"valid", good, true},
		{"non-canonical S, signer held", nonCanonical, false},
	} {
		_, want := Open(tc.raw)
		_, got := c.Open(tc.raw)
		if (want == nil) != tc.ok || (got == nil) != tc.ok {
			t.Fatalf("%s: Open says %v, VerifyCache.Open %v, want ok=%v", tc.name, want, got, tc.ok)
		}
		if !tc.ok && (!errors.Is(got, ErrBadSignature) || !errors.Is(want, ErrBadSignature)) {
			t.Fatalf("%s: %v and %v, want %v", tc.name, want, got, ErrBadSignature)
		}
	}
}

func reversed(b []byte) []byte {
	r := slices.Clone(b)
	slices.Reverse(r)
	return r
}

// FuzzSignerKeys: on any key, message and signature, the verifier agrees
// with crypto/ed25519, for a new and for a held signer.
func FuzzSignerKeys(f *testing.F) {
	for i, c := range edgeCases(f) {
		if i%7 == 0 {
			f.Add(c.pub, c.msg, c.sig)
		}
	}
	key := cacheTestKey("fuzz")
	msg := []byte("meshward")
	f.Add([]byte(key.Public().(ed25519.PublicKey)), msg, ed25519.Sign(key, msg))
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return
		}
		want := ed25519.Verify(pub, msg, sig)
		var k signerKeys
		k.init(1)
		if _, got := k.verify(pub, msg, sig); got != want {
			t.Fatalf("new signer: %v, crypto/ed25519 %v", got, want)
		}
		if ek, err := voi.NewExpandedPublicKey(voi.PublicKey(pub)); err == nil {
			k.shards[pub[31]%verifyCacheShards].m[[32]byte(pub)] = signer{key: ek, id: NodeID(pub)}
			if _, got := k.verify(pub, msg, sig); got != want {
				t.Fatalf("held signer: %v, crypto/ed25519 %v", got, want)
			}
		}
	})
}

// A held signer's envelopes carry its node ID, as a new signer's do.
func TestVerifyCacheHeldSignerOrigin(t *testing.T) {
	c := NewVerifyCache(64)
	for _, name := range []string{"a", "b"} {
		key := cacheTestKey(name)
		for seq := uint64(1); seq <= 3; seq++ {
			env, err := c.Open(sealTestSighting(t, key, seq))
			if err != nil {
				t.Fatal(err)
			}
			if want := NodeID(key.Public().(ed25519.PublicKey)); env.OriginID() != want {
				t.Fatalf("%s seq %d: origin %s, want %s", name, seq, env.OriginID(), want)
			}
		}
	}
}
