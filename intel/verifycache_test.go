package intel

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
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
		if g, w := exported(got), exported(want); g != w {
			t.Fatalf("cache opened %s, Open %s", g, w)
		}
		if got.OriginID() != want.OriginID() {
			t.Fatalf("cache's origin %s, Open's %s", got.OriginID(), want.OriginID())
		}
		gs, gerr := DecodeSighting(got)
		ws, werr := DecodeSighting(want)
		if fmt.Sprint(gs, gerr) != fmt.Sprint(ws, werr) {
			t.Fatalf("cache's sighting %+v (%v), Open's %+v (%v)", gs, gerr, ws, werr)
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
	held := func(x [32]byte) bool {
		m, ok := s.lookup(x)
		if ok && m.origin != fmt.Sprint(x[0]) {
			t.Fatalf("digest %d holds the memo %q", x[0], m.origin)
		}
		return ok
	}
	s.insert(a, verifyMemo{origin: "1"})
	s.insert(b, verifyMemo{origin: "2"})
	if !held(a) {
		t.Fatal("a not held")
	}
	s.insert(d, verifyMemo{origin: "3"})
	if !held(a) || held(b) || !held(d) {
		t.Fatalf("after inserting a third: a %v, b %v, d %v; want a and d held", held(a), held(b), held(d))
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

// exported prints an envelope's exported fields.
func exported(e *Envelope) string {
	return fmt.Sprint(e.Version, e.Kind, e.Origin, e.Seq, e.Time, e.Payload, e.Raw)
}

func sealTestSightingOf(tb testing.TB, key ed25519.PrivateKey, seq uint64, s Sighting) []byte {
	tb.Helper()
	b, err := SealJSON(key, KindSighting, seq, time.Unix(1_700_000_000, 0).UTC(), s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// What the cache remembers of a decoding is what decoding the same bytes
// gives, on a miss and on every hit: the sighting, or the same error for
// an envelope whose signature verifies but whose payload is no valid
// sighting, or is no sighting at all; a sighting too large to remember is
// decoded every time. What a caller gets is its own copy.
func TestVerifyCacheMemo(t *testing.T) {
	key := cacheTestKey("memo")
	now := time.Unix(1_700_000_000, 0).UTC()
	ind, err := NewIndicator(IPv4, "198.51.100.9")
	if err != nil {
		t.Fatal(err)
	}
	valid := Sighting{Indicator: ind, Detector: "ssh", Confidence: 80, Count: 3, FirstSeen: now, LastSeen: now}
	long := valid
	long.Detector = strings.Repeat("d", 128)
	long.Site = strings.Repeat("s", 128)
	invalid := valid
	invalid.Count = 0
	raws := map[string][]byte{
		"valid":   sealTestSightingOf(t, key, 1, valid),
		"long":    sealTestSightingOf(t, key, 2, long),
		"invalid": sealTestSightingOf(t, key, 3, invalid),
	}
	raws["unknown field"], err = Seal(key, KindSighting, 4, now, []byte(`{"indicator":{"type":"ipv4","value":"198.51.100.9"},"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	raws["heartbeat"], err = Seal(key, KindHeartbeat, 5, now, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	c := NewVerifyCache(64)
	for name, raw := range raws {
		want, err := Open(raw)
		if err != nil {
			t.Fatal(name, err)
		}
		ws, werr := DecodeSighting(want)
		for i := range 3 {
			got, err := c.Open(raw)
			if err != nil {
				t.Fatal(name, err)
			}
			if got.OriginID() != want.OriginID() || got.OriginID() != NodeID(key.Public().(ed25519.PublicKey)) {
				t.Fatalf("%s, open %d: origin %s, want %s", name, i, got.OriginID(), want.OriginID())
			}
			gs, gerr := DecodeSighting(got)
			if fmt.Sprintf("%#v %v", gs, gerr) != fmt.Sprintf("%#v %v", ws, werr) {
				t.Fatalf("%s, open %d: %#v (%v), without the cache %#v (%v)", name, i, gs, gerr, ws, werr)
			}
			if gerr == nil {
				// The caller's copy is its own.
				gs.Detector, gs.Indicator.Value, gs.Count = "changed", "changed", 99
			}
		}
		memo := got(c, raw)
		switch name {
		case "valid":
			if memo.sighting == nil {
				t.Fatal("a valid sighting is not remembered")
			}
		default:
			if memo.sighting != nil {
				t.Fatalf("%s: a sighting is remembered", name)
			}
		}
	}
	if st := c.Stats(); st.Verified != uint64(len(raws)) || st.Hits != 2*uint64(len(raws)) {
		t.Fatalf("stats %+v", st)
	}
}

// got returns the memo a cache holds for raw.
func got(c *VerifyCache, raw []byte) verifyMemo {
	d := sha256.Sum256(raw)
	m, _ := c.shards[d[0]%verifyCacheShards].lookup(d)
	return m
}

// A full cache of remembered sightings stays within the memory its size
// documents (DefaultVerifyCacheSize: about 7 MB for typical sightings,
// 12 MB at most).
func TestVerifyCacheMemory(t *testing.T) {
	const n = 4096
	key := cacheTestKey("memory")
	now := time.Unix(1_700_000_000, 0).UTC()
	envs := make([][]byte, 0, 2*n)
	for i := range 2 * n {
		ind, err := NewIndicator(IPv6, fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff))
		if err != nil {
			t.Fatal(err)
		}
		// The largest text remembered: maxMemoSighting bytes.
		s := Sighting{Indicator: ind, Detector: "ssh-bruteforce", Technique: "T1110.001", Severity: SeverityHigh,
			Confidence: 80, Count: 3, FirstSeen: now, LastSeen: now}
		s.Site = strings.Repeat("s", min(128, maxMemoSighting-sightingText(&s)))
		s.Detector += strings.Repeat("d", maxMemoSighting-sightingText(&s))
		envs = append(envs, sealTestSightingOf(t, key, uint64(i+1), s))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewVerifyCache(n)
	for _, e := range envs { // twice the capacity: every slot replaced once
		if _, err := c.Open(e); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	st := c.Stats()
	if st.Len != n || got(c, envs[len(envs)-1]).sighting == nil {
		t.Fatalf("stats %+v, or the last sighting not remembered", st)
	}
	t.Logf("%d bytes per remembered envelope at the largest text", per)
	if limit := int64(12<<20) / DefaultVerifyCacheSize; per > limit {
		t.Fatalf("%d bytes per remembered envelope, the documented bound is %d", per, limit)
	}
	runtime.KeepAlive(c)
}

// VerifySignature remembers a valid signature (the same key, message and
// signature again cost no verification) and never an invalid one: a bit
// flipped in the key, the message or the signature is verified afresh and
// refused, every time.
func TestVerifySignatureMemo(t *testing.T) {
	key := cacheTestKey("signature memo")
	pub := key.Public().(ed25519.PublicKey)
	msg := []byte("meshward certificate test message")
	sig := ed25519.Sign(key, msg)
	before := processSigs.verified.Load()
	for i := range 3 {
		if !VerifySignature(pub, msg, sig) {
			t.Fatalf("call %d: valid signature refused", i)
		}
	}
	if got := processSigs.verified.Load() - before; got != 1 {
		t.Fatalf("valid signature verified %d times in 3 calls, want 1 (then remembered)", got)
	}
	flip := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		return c
	}
	for name, args := range map[string][3][]byte{
		"key":       {flip(pub, 5), msg, sig},
		"message":   {pub, flip(msg, 3), sig},
		"signature": {pub, msg, flip(sig, 40)},
		"short msg": {pub, msg[:len(msg)-1], sig},
	} {
		for i := range 2 {
			if VerifySignature(args[0], args[1], args[2]) {
				t.Fatalf("%s altered, call %d: accepted", name, i)
			}
			if ed25519.Verify(args[0], args[1], args[2]) {
				t.Fatalf("%s altered: crypto/ed25519 accepts it, the test is wrong", name)
			}
		}
	}
	if got := processSigs.verified.Load() - before; got != 1 {
		t.Fatalf("%d signatures remembered, want only the valid one", got)
	}
	if !VerifySignature(pub, msg, sig) {
		t.Fatal("valid signature refused after the forgeries")
	}
}

// The memo holds at most its bound.
func TestSigMemoBounded(t *testing.T) {
	m := newSigMemo(64)
	for i := range 1000 {
		m.add(sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
	}
	n := 0
	for i := range m.shards {
		n += len(m.shards[i].index)
	}
	if n > 64 {
		t.Fatalf("memo of 64 holds %d digests", n)
	}
	if !m.has(sha256.Sum256([]byte{byte(999 % 256), byte(999 >> 8)})) {
		t.Fatal("the last digest added is not held")
	}
}
