package intel

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func sealTestSighting(tb testing.TB, key ed25519.PrivateKey, seq uint64) []byte {
	tb.Helper()
	ind, err := NewIndicator(IPv4, fmt.Sprintf("198.51.100.%d", seq%250+1))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0).UTC()
	b, err := SealJSON(key, KindSighting, seq, now, Sighting{Indicator: ind, Detector: "ssh", Confidence: 80, Count: 1, FirstSeen: now, LastSeen: now})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func cacheTestKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("verify cache test " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// A bit flipped anywhere in an envelope the cache has verified is opened
// afresh and refused exactly as Open refuses it; the verified bytes still
// open from the cache.
func TestVerifyCacheNeverAcceptsAlteredBytes(t *testing.T) {
	c := NewVerifyCache(64)
	good := sealTestSighting(t, cacheTestKey("a"), 1)
	if _, err := c.Open(good); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(good); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Hits != 1 || st.Verified != 1 || st.Len != 1 {
		t.Fatalf("stats after two opens of one envelope: %+v, want 1 hit, 1 verified, 1 held", st)
	}
	for i := range len(good) * 8 {
		bad := append([]byte(nil), good...)
		bad[i/8] ^= 1 << (i % 8)
		_, want := Open(bad)
		env, got := c.Open(bad)
		if got == nil || env != nil {
			t.Fatalf("bit %d flipped: the cache opened it", i)
		}
		if want == nil || got.Error() != want.Error() {
			t.Fatalf("bit %d flipped: cache says %v, Open says %v", i, got, want)
		}
	}
	if st := c.Stats(); st.Len != 1 || st.Hits != 1 {
		t.Fatalf("refused envelopes changed the cache: %+v", st)
	}
	// Truncated and extended bytes too.
	for _, bad := range [][]byte{good[:len(good)-1], append(append([]byte(nil), good...), 0)} {
		if _, err := c.Open(bad); err == nil {
			t.Fatalf("%d bytes of a %d-byte envelope opened", len(bad), len(good))
		}
	}
	if _, err := c.Open(good); err != nil {
		t.Fatal(err)
	}
}

// The cache returns what Open returns, field for field.
func TestVerifyCacheSameEnvelope(t *testing.T) {
	c := NewVerifyCache(64)
	raw := sealTestSighting(t, cacheTestKey("a"), 7)
	want, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a miss, then a hit
		got, err := c.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(*got) != fmt.Sprint(*want) {
			t.Fatalf("cache opened %+v, Open %+v", *got, *want)
		}
	}
	var nilCache *VerifyCache
	if got, err := nilCache.Open(raw); err != nil || got.Seq != 7 {
		t.Fatalf("nil cache: %v, %v", got, err)
	}
	if _, err := nilCache.Open(raw[:10]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil cache, short input: %v", err)
	}
}

// However many envelopes pass through it, the cache holds at most its
// capacity, and what it evicted is verified again, not refused.
func TestVerifyCacheBounded(t *testing.T) {
	c := NewVerifyCache(32)
	key := cacheTestKey("a")
	var envs [][]byte
	for i := range 320 {
		envs = append(envs, sealTestSighting(t, key, uint64(i+1)))
	}
	for _, e := range envs {
		if _, err := c.Open(e); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	if st.Cap != 32 || st.Len > st.Cap || st.Verified != 320 {
		t.Fatalf("after 320 envelopes: %+v, want at most 32 held, 320 verified", st)
	}
	if _, err := c.Open(envs[0]); err != nil {
		t.Fatalf("an evicted envelope: %v", err)
	}
}

// The clock gives an entry found since the hand's last pass a second
// chance, and evicts the one that was not.
func TestVerifyShardClock(t *testing.T) {
	s := verifyShard{index: map[[sha256.Size]byte]int32{}, slots: make([]verifySlot, 2)}
	a, b, d := [32]byte{1}, [32]byte{2}, [32]byte{3}
	s.insert(a)
	s.insert(b)
	if !s.lookup(a) {
		t.Fatal("a not held")
	}
	s.insert(d)
	if !s.lookup(a) || s.lookup(b) || !s.lookup(d) {
		t.Fatalf("after inserting a third: a %v, b %v, d %v; want a and d held", s.lookup(a), s.lookup(b), s.lookup(d))
	}
	if len(s.index) != 2 {
		t.Fatalf("%d held, capacity 2", len(s.index))
	}
}

// Concurrent opens of shared and distinct envelopes, run under -race.
func TestVerifyCacheConcurrent(t *testing.T) {
	c := NewVerifyCache(48)
	key := cacheTestKey("a")
	var envs [][]byte
	for i := range 96 {
		envs = append(envs, sealTestSighting(t, key, uint64(i+1)))
	}
	bad := append([]byte(nil), envs[0]...)
	bad[len(bad)-1] ^= 0x80
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 3 * len(envs) {
				if _, err := c.Open(envs[(i*(g+1))%len(envs)]); err != nil {
					t.Error(err)
					return
				}
				if i%16 == 0 {
					if _, err := c.Open(bad); !errors.Is(err, ErrBadSignature) {
						t.Errorf("tampered envelope: %v", err)
						return
					}
					_ = c.Stats()
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Len > st.Cap || st.Hits+st.Verified != 4*3*96 {
		t.Fatalf("stats %+v: want at most cap held, %d opens counted", st, 4*3*96)
	}
}

func BenchmarkVerifyCacheOpen(b *testing.B) {
	raw := sealTestSighting(b, cacheTestKey("a"), 1)
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := Open(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := NewVerifyCache(DefaultVerifyCacheSize)
		for b.Loop() {
			if _, err := c.Open(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
