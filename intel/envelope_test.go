package intel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testSighting() Sighting {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	return Sighting{
		Indicator:  Indicator{Type: IPv4, Value: "203.0.113.7"},
		Detector:   "ssh-bruteforce",
		Technique:  "T1110.001",
		Severity:   SeverityHigh,
		Confidence: 80,
		Count:      5,
		FirstSeen:  t0,
		LastSeen:   t0.Add(10 * time.Second),
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := testKey(t)
	ts := time.Unix(1700000000, 123).UTC()
	s := testSighting()
	b, err := SealJSON(k, KindSighting, 42, ts, s)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(b)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if e.Seq != 42 || !e.Time.Equal(ts) || e.Kind != KindSighting || !bytes.Equal(e.Origin, k.Public().(ed25519.PublicKey)) {
		t.Fatalf("header mismatch: %+v", e)
	}
	if !bytes.Equal(e.Raw, b) {
		t.Fatal("Raw is not the bytes that were sent")
	}
	got, err := DecodeSighting(e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Indicator != s.Indicator || got.Count != s.Count || !got.FirstSeen.Equal(s.FirstSeen) {
		t.Fatalf("sighting mismatch: %+v", got)
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKey(t)
	other := testKey(t)
	good, err := SealJSON(k, KindSighting, 1, time.Now(), testSighting())
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good))
	}
	forgedByOther, _ := SealJSON(other, KindSighting, 1, time.Now(), testSighting())
	// Put our origin key in front of the other key's signature.
	copy(forgedByOther[2:34], k.Public().(ed25519.PublicKey))

	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"payload byte flipped", mutate(func(b []byte) []byte { b[headerSize+3] ^= 1; return b }), ErrBadSignature},
		{"seq changed", mutate(func(b []byte) []byte { b[41]++; return b }), ErrBadSignature},
		{"signature byte flipped", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), ErrBadSignature},
		{"signed by another key", forgedByOther, ErrBadSignature},
		{"oversized", make([]byte, MaxEnvelopeSize+1), ErrOversized},
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"unknown version", mutate(func(b []byte) []byte { b[0] = 9; return b }), ErrUnknownVersion},
		{"unknown kind", mutate(func(b []byte) []byte { b[1] = 77; return b }), ErrMalformed},
		{"seq zero", mutate(func(b []byte) []byte { clear(b[34:42]); return b }), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: got %v, want %v", err, c.want)
			}
			for _, other := range []error{ErrOversized, ErrMalformed, ErrUnknownVersion, ErrBadSignature} {
				if other != c.want && errors.Is(err, other) {
					t.Fatalf("error %v also matches %v; reasons must be distinct", err, other)
				}
			}
		})
	}
}

func TestDecodeSightingRejectsBadPayload(t *testing.T) {
	k := testKey(t)
	bad := testSighting()
	bad.Count = 0
	for name, payload := range map[string][]byte{
		"not json":      []byte("{"),
		"unknown field": []byte(`{"indicator":{"type":"ipv4","value":"1.2.3.4"},"bogus":1}`),
		"trailing":      []byte(`{} {}`),
	} {
		b, err := Seal(k, KindSighting, 1, time.Now(), payload)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Open(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeSighting(e); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	b, _ := SealJSON(k, KindSighting, 1, time.Now(), bad)
	e, _ := Open(b)
	if _, err := DecodeSighting(e); !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidSighting) {
		t.Errorf("invalid sighting: got %v", err)
	}
}

func TestSealRejects(t *testing.T) {
	k := testKey(t)
	if _, err := Seal(k, KindSighting, 1, time.Now(), make([]byte, MaxPayloadSize+1)); !errors.Is(err, ErrOversized) {
		t.Errorf("oversized payload: %v", err)
	}
	if _, err := Seal(k, KindSighting, 0, time.Now(), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("seq 0: %v", err)
	}
	if _, err := Seal(k[:10], KindSighting, 1, time.Now(), nil); err == nil {
		t.Error("short key accepted")
	}
	if b, err := Seal(k, KindSighting, 1, time.Now(), make([]byte, MaxPayloadSize)); err != nil || len(b) != MaxEnvelopeSize {
		t.Errorf("largest payload: len %d, err %v", len(b), err)
	}
}

func TestNodeIDMatchesLibp2p(t *testing.T) {
	for range 20 {
		k := testKey(t)
		lk, err := crypto.UnmarshalEd25519PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		want, err := peer.IDFromPublicKey(lk.GetPublic())
		if err != nil {
			t.Fatal(err)
		}
		if got := NodeID(k.Public().(ed25519.PublicKey)); got != want.String() {
			t.Fatalf("NodeID = %s, libp2p says %s", got, want)
		}
	}
	if NodeID(nil) != "" {
		t.Fatal("NodeID of a short key should be empty")
	}
}

func FuzzOpen(f *testing.F) {
	_, k, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	good, _ := SealJSON(k, KindSighting, 7, time.Unix(1, 0), testSighting())
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:headerSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Open(b)
		if err != nil {
			if e != nil {
				t.Fatal("non-nil envelope with error")
			}
			n := 0
			for _, r := range []error{ErrOversized, ErrMalformed, ErrUnknownVersion, ErrBadSignature} {
				if errors.Is(err, r) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v matches %d reasons, want 1", err, n)
			}
			return
		}
		// Whatever opens must re-seal to the same signed body.
		if !bytes.Equal(e.Raw, b) || len(e.Payload) > MaxPayloadSize {
			t.Fatal("accepted envelope does not alias input")
		}
		_, _ = DecodeSighting(e)
	})
}

func BenchmarkSeal(b *testing.B) {
	k := testKey(b)
	s := testSighting()
	ts := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := SealJSON(k, KindSighting, uint64(i+1), ts, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := testKey(b)
	env, _ := SealJSON(k, KindSighting, 1, time.Now(), testSighting())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(env); err != nil {
			b.Fatal(err)
		}
	}
}
