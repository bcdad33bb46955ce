package intel

import (
	"crypto/ed25519"
	"crypto/sha256"
	"sync"
	"sync/atomic"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// DefaultVerifyCacheSize is the number of verified envelopes a node
// remembers by default, minutes of a large mesh's sightings: about 7 MB
// with the decoded sightings of typical envelopes, at most about 12 MB
// (maxMemoSighting).
const DefaultVerifyCacheSize = 16384

// maxMemoSighting bounds the text of a sighting the cache keeps decoded
// (indicator, detector, technique, severity, site): an address, a range,
// a hash or a usual domain or URL fits; a larger one is decoded again on
// every open.
const maxMemoSighting = 256

// verifyCacheShards spreads the cache over independent locks, so that the
// gossip validators and the FSM rarely wait for each other.
const verifyCacheShards = 16

// VerifyCache remembers which envelopes' signatures have verified, by the
// SHA-256 of their exact bytes, so that an envelope checked once (on
// gossip receipt, by the leader before it appends an entry) costs a hash
// rather than an ed25519 verification the next time it is opened (in
// every replica's FSM). With the digest it keeps what decoding those
// bytes gave: the signer's node ID and, for a sighting, the decoded and
// validated sighting, which the envelopes it opens carry (OriginID and
// DecodeSighting return them without decoding again). Verification and
// decoding are pure functions of the bytes: skipping them for bytes
// already verified cannot change any result, and bytes that differ in
// one bit have another digest and are verified and decoded afresh. Only
// successes are remembered.
//
// It holds a fixed number of digests (clock eviction: an entry opened
// again since the hand last passed gets a second chance) and is safe for
// concurrent use. A nil *VerifyCache remembers nothing: its Open is Open.
type VerifyCache struct {
	shards         [verifyCacheShards]verifyShard
	signers        signerKeys
	hits, verified atomic.Uint64
}

type verifyShard struct {
	mu    sync.Mutex
	index map[[sha256.Size]byte]int32 // digest -> slot
	slots []verifySlot                // grows to max, then recycled by the clock
	max   int
	hand  int
}

type verifySlot struct {
	digest [sha256.Size]byte
	memo   verifyMemo
	used   bool // holds a digest
	ref    bool // found since the hand last passed
}

// verifyMemo is what decoding a verified envelope gave: its signer's node
// ID and, for a sighting that decoded and validated (and fits
// maxMemoSighting), the sighting. Never mutated once made.
type verifyMemo struct {
	origin   string
	sighting *Sighting
}

// NewVerifyCache returns a cache of about size digests (at least one per
// shard).
func NewVerifyCache(size int) *VerifyCache {
	c := &VerifyCache{}
	// The shards grow as digests arrive, up to their share each: a node
	// of a quiet mesh (or one of hundreds in a simulation) pays for what
	// it remembers, not for the bound.
	initShards(&c.shards, size)
	c.signers.init(maxSignerKeys)
	return c
}

// Open has the contract of the package's Open, errors included: it
// decodes b, and verifies its signature unless these exact bytes verified
// before; a verified envelope is remembered, with its signer's node ID
// and, for a sighting, DecodeSighting's result when it is valid. The
// envelope returned carries them: its OriginID and DecodeSighting cost
// nothing.
func (c *VerifyCache) Open(b []byte) (*Envelope, error) {
	if c == nil {
		return Open(b)
	}
	e, err := parse(b)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(b)
	s := &c.shards[d[0]%verifyCacheShards]
	if m, ok := s.lookup(d); ok {
		c.hits.Add(1)
		e.origin, e.sighting = m.origin, m.sighting
		return e, nil
	}
	n := len(b) - sigSize
	msg := signedBytesPooled(b[:n])
	origin, ok := c.signers.verify(e.Origin, *msg, b[n:])
	signedPool.Put(msg)
	if !ok {
		return nil, ErrBadSignature
	}
	c.verified.Add(1)
	m := verifyMemo{origin: origin}
	if e.Kind == KindSighting {
		if sg, err := DecodeSighting(e); err == nil && sightingText(&sg) <= maxMemoSighting {
			m.sighting = &sg
		}
	}
	s.insert(d, m)
	e.origin, e.sighting = m.origin, m.sighting
	return e, nil
}

// sightingText is the length of a sighting's strings.
func sightingText(s *Sighting) int {
	return len(s.Indicator.Type) + len(s.Indicator.Value) + len(s.Detector) + len(s.Technique) + len(s.Severity) + len(s.Site)
}

// VerifyCacheStats are a cache's counters.
type VerifyCacheStats struct {
	// Hits are opens whose signature check was skipped; Verified the
	// signatures verified (and remembered); Len the digests held, Cap
	// how many it can hold.
	Hits, Verified uint64
	Len, Cap       int
}

// Stats returns the cache's counters.
func (c *VerifyCache) Stats() VerifyCacheStats {
	if c == nil {
		return VerifyCacheStats{}
	}
	st := VerifyCacheStats{Hits: c.hits.Load(), Verified: c.verified.Load()}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Len += len(s.index)
		st.Cap += s.max
		s.mu.Unlock()
	}
	return st
}

func (s *verifyShard) lookup(d [sha256.Size]byte) (verifyMemo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[d]
	if !ok {
		return verifyMemo{}, false
	}
	s.slots[i].ref = true
	return s.slots[i].memo, true
}

// insert adds d, evicting by the clock: the hand clears the reference bit
// of each entry it passes and takes the first slot that is free or was
// not found since its last pass.
func (s *verifyShard) insert(d [sha256.Size]byte, m verifyMemo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[d]; ok {
		return // verified concurrently by another caller
	}
	if len(s.slots) < s.max {
		s.index[d] = int32(len(s.slots))
		s.slots = append(s.slots, verifySlot{digest: d, memo: m, used: true})
		return
	}
	for {
		slot := &s.slots[s.hand]
		i := s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		if slot.used && slot.ref {
			slot.ref = false
			continue
		}
		if slot.used {
			delete(s.index, slot.digest)
		}
		*slot = verifySlot{digest: d, memo: m, used: true}
		s.index[d] = int32(i)
		return
	}
}

// maxSignerKeys bounds the signers whose expanded public keys a
// VerifyCache keeps: each costs about 1.5 KiB, so about 3 MB in all,
// enough for every member of a large mesh.
const maxSignerKeys = 2048

// stdlibRules makes curve25519-voi accept and reject exactly the
// signatures crypto/ed25519 accepts and rejects: small-order and
// non-canonical public keys are accepted, a non-canonical S or R is
// rejected, and the cofactorless equation is checked. Every envelope a
// node opens must get the same answer whichever path opens it (Open, a
// VerifyCache, another node), or nodes would disagree on what a member
// signed.
//
// Batch verification is not used, although it would halve the cost of a
// signature again: it checks the cofactored equation, which also
// accepts signatures crypto/ed25519 refuses (one whose R has a small-order
// component, which the key's holder can make), and telling those apart
// costs about as much as verifying one by one. A member could otherwise
// sign an envelope that some nodes accept and others refuse.
var stdlibRules = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// signerKeys keeps the expanded form (precomputed multiples) of the
// public keys of signers whose signatures verified, so that verifying
// another signature of the same signer costs about half of what
// crypto/ed25519 spends (which decompresses the key and builds its
// tables on every call). The answer is the same (stdlibRules, tested
// against crypto/ed25519 on the ed25519 edge-case vectors). Only a key
// that has signed something valid is kept, so forged signatures cannot
// fill it; when a shard is full an arbitrary entry is dropped.
type signerKeys struct {
	shards [verifyCacheShards]signerShard
}

type signerShard struct {
	mu  sync.Mutex
	max int
	m   map[[ed25519.PublicKeySize]byte]signer
}

// signer is a held signer: its expanded key and its node ID.
type signer struct {
	key *voi.ExpandedPublicKey
	id  string // NodeID of the key
}

func (k *signerKeys) init(size int) {
	per := max(1, (size+verifyCacheShards-1)/verifyCacheShards)
	for i := range k.shards {
		k.shards[i].max = per
		k.shards[i].m = make(map[[ed25519.PublicKeySize]byte]signer)
	}
}

// verify reports whether sig is pub's signature of msg, as
// crypto/ed25519.Verify does, and with a valid signature returns pub's
// node ID (NodeID). pub is 32 bytes and sig 64 (parse checked the sizes).
func (k *signerKeys) verify(pub ed25519.PublicKey, msg, sig []byte) (string, bool) {
	var id [ed25519.PublicKeySize]byte
	copy(id[:], pub)
	s := &k.shards[id[ed25519.PublicKeySize-1]%verifyCacheShards]
	s.mu.Lock()
	held, ok := s.m[id]
	s.mu.Unlock()
	if ok {
		return held.id, voi.VerifyExpandedWithOptions(held.key, msg, sig, stdlibRules)
	}
	ek, err := voi.NewExpandedPublicKey(voi.PublicKey(pub))
	if err != nil {
		// Not a point: crypto/ed25519 refuses it too; let it say so.
		return NodeID(pub), ed25519.Verify(pub, msg, sig)
	}
	if !voi.VerifyExpandedWithOptions(ek, msg, sig, stdlibRules) {
		return "", false
	}
	held = signer{key: ek, id: NodeID(pub)}
	s.mu.Lock()
	if _, ok := s.m[id]; !ok && len(s.m) >= s.max {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[id] = held
	s.mu.Unlock()
	return held.id, true
}

// signedPool holds the buffers in which the signed bytes (SigningDomain
// and the envelope before its signature) are assembled for verification.
var signedPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// signedBytesPooled returns SigningDomain || body in a buffer of
// signedPool, which the caller puts back once done with it.
func signedBytesPooled(body []byte) *[]byte {
	p := signedPool.Get().(*[]byte)
	*p = append(append((*p)[:0], SigningDomain...), body...)
	return p
}

// processKeys are the expanded keys VerifySignature keeps, shared by
// every caller in the process.
var processKeys = func() *signerKeys {
	k := &signerKeys{}
	k.init(maxSignerKeys)
	return k
}()

// processSigs are the signatures VerifySignature found valid, by the
// SHA-256 of key, signature and message (maxVerifiedSigs of them).
var processSigs = newSigMemo(maxVerifiedSigs)

// maxVerifiedSigs bounds processSigs: some 4,000 digests of about 100
// bytes with their slots, far more than the voters' certificates a node
// holds at once.
const maxVerifiedSigs = 4096

// VerifySignature reports whether sig is pub's ed25519 signature of msg,
// with exactly crypto/ed25519.Verify's answer (stdlibRules). The process
// remembers the signatures it found valid (processSigs), so that the
// same key, message and signature checked again cost a hash, and keeps
// the expanded form of up to maxSignerKeys keys that signed validly, so
// that another signature of the same key costs about half of
// crypto/ed25519's. For signatures checked again and again by many parts
// of a node, or by many nodes of one process: a voter's chain
// certificates, which every edge checks (a simulated mesh's hundreds of
// edges in one process check each once between them). Verification is a
// pure function of the three byte strings, so a remembered answer is the
// answer: bytes that differ in one bit have another digest. Only valid
// signatures are remembered, so forged ones cannot fill the memo; each
// is verified every time.
func VerifySignature(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	d := sigDigest(pub, msg, sig)
	if processSigs.has(d) {
		return true
	}
	if _, ok := processKeys.verify(pub, msg, sig); !ok {
		return false
	}
	processSigs.add(d)
	return true
}

// sigDigest is the SHA-256 of pub, sig and msg: the first two have fixed
// sizes, so no two triples share the concatenation.
func sigDigest(pub ed25519.PublicKey, msg, sig []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(pub)
	h.Write(sig)
	h.Write(msg)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// sigMemo is a bounded set of digests, sharded as a VerifyCache is and
// evicted by the same clock. Safe for concurrent use.
type sigMemo struct {
	shards   [verifyCacheShards]verifyShard
	verified atomic.Uint64 // digests added
}

func newSigMemo(size int) *sigMemo {
	m := &sigMemo{}
	initShards(&m.shards, size)
	return m
}

// initShards makes shards empty, holding about size digests between them
// (at least one each).
func initShards(shards *[verifyCacheShards]verifyShard, size int) {
	per := max(1, (size+verifyCacheShards-1)/verifyCacheShards)
	for i := range shards {
		shards[i].index = make(map[[sha256.Size]byte]int32)
		shards[i].max = per
	}
}

func (m *sigMemo) has(d [sha256.Size]byte) bool {
	_, ok := m.shards[d[0]%verifyCacheShards].lookup(d)
	return ok
}

func (m *sigMemo) add(d [sha256.Size]byte) {
	m.verified.Add(1)
	m.shards[d[0]%verifyCacheShards].insert(d, verifyMemo{})
}
