package consensus

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/google/btree"
)

// Indexes over indicators, so that the FSM finds what overlaps an
// indicator without scanning every policy. Overlap follows
// intel.Indicator.Overlaps exactly:
//
//   - an address or CIDR (any indicator whose Prefix is ok) overlaps the
//     prefixes that contain it or that it contains, of the same address
//     family (netip.Prefix.Overlaps);
//   - a domain overlaps itself, its parent domains and its subdomains, at
//     label boundaries;
//   - anything else overlaps only an identical indicator.
//
// Every index is ordered, so that a walk visits its hits in a fixed order
// whatever the history of the index.

// btreeDegree is the degree of every B-tree here: nodes of 31 to 63 items.
const btreeDegree = 32

// prefixKey is a masked prefix as a 128-bit address (an IPv4 address in
// the top 32 bits of hi) and its length.
type prefixKey struct {
	hi, lo uint64
	bits   uint8
	v6     bool
}

func keyOfPrefix(p netip.Prefix) prefixKey {
	p = p.Masked()
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		return prefixKey{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32, bits: uint8(p.Bits())}
	}
	b := a.As16()
	return prefixKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), bits: uint8(p.Bits()), v6: true}
}

// prefix is the netip form of k.
func (k prefixKey) prefix() netip.Prefix {
	if !k.v6 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k.hi>>32))
		return netip.PrefixFrom(netip.AddrFrom4(b), int(k.bits))
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), int(k.bits))
}

// maskTo returns k's address masked to bits (bits <= k.bits).
func (k prefixKey) maskTo(bits uint8) prefixKey {
	out := prefixKey{bits: bits, v6: k.v6}
	switch {
	case bits == 0:
	case bits <= 64:
		out.hi = k.hi &^ (^uint64(0) >> bits)
	default:
		out.hi = k.hi
		out.lo = k.lo &^ (^uint64(0) >> (bits - 64))
	}
	return out
}

// last returns the last address k covers, as (hi, lo).
func (k prefixKey) last() (uint64, uint64) {
	width := uint8(32)
	if k.v6 {
		width = 128
	}
	hi, lo := k.hi, k.lo
	host := width - k.bits // host bits
	if !k.v6 {
		// IPv4 lives in the top 32 bits of hi.
		if host > 0 {
			hi |= (^uint64(0) >> (64 - host)) << 32
		}
		return hi, lo
	}
	switch {
	case host == 0:
	case host <= 64:
		lo |= ^uint64(0) >> (64 - host)
	default:
		lo = ^uint64(0)
		hi |= ^uint64(0) >> (128 - host)
	}
	return hi, lo
}

// v4Item is one IPv4 entry of a prefixIndex: the address in the top 32
// bits of k and the length in its low byte (so that k orders by address,
// then length), and the policy it belongs to (0 for a bare set).
type v4Item struct{ k, id uint64 }

func v4Key(k prefixKey) uint64 { return k.hi>>24 | uint64(k.bits) }

func lessV4Item(a, b v4Item) bool { return a.k < b.k || a.k == b.k && a.id < b.id }

// v6Item is one IPv6 entry of a prefixIndex.
type v6Item struct {
	hi, lo, id uint64
	bits       uint8
}

func lessV6Item(a, b v6Item) bool {
	return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo), cmp.Compare(a.bits, b.bits), cmp.Compare(a.id, b.id)) < 0
}

// prefixIndex holds (prefix, id) pairs ordered by address family, then
// address, then length, then id: the order of sortedPrefixes. IPv4
// entries take 16 bytes.
type prefixIndex struct {
	v4 *btree.BTreeG[v4Item]
	v6 *btree.BTreeG[v6Item]
	// lengths counts the entries of each (family, length), so that the
	// search for containing prefixes tries only the lengths present.
	lengths [2][129]int32
}

func newPrefixIndex() *prefixIndex {
	return &prefixIndex{v4: btree.NewG(btreeDegree, lessV4Item), v6: btree.NewG(btreeDegree, lessV6Item)}
}

func fam(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

func (x *prefixIndex) add(k prefixKey, id uint64) {
	var had bool
	if k.v6 {
		_, had = x.v6.ReplaceOrInsert(v6Item{k.hi, k.lo, id, k.bits})
	} else {
		_, had = x.v4.ReplaceOrInsert(v4Item{v4Key(k), id})
	}
	if !had {
		x.lengths[fam(k.v6)][k.bits]++
	}
}

func (x *prefixIndex) remove(k prefixKey, id uint64) {
	var had bool
	if k.v6 {
		_, had = x.v6.Delete(v6Item{k.hi, k.lo, id, k.bits})
	} else {
		_, had = x.v4.Delete(v4Item{v4Key(k), id})
	}
	if had {
		x.lengths[fam(k.v6)][k.bits]--
	}
}

func (x *prefixIndex) len() int { return x.v4.Len() + x.v6.Len() }

// overlapping calls fn for every entry whose prefix overlaps k (contains
// it or lies within it), in index order, until fn returns false.
//
// The prefixes strictly containing k come first: one exact look-up per
// length present; their addresses are at most k's, increasing with
// length. Then k and the prefixes within it: a range of addresses from
// k's first to its last; every entry there of length k.bits or more lies
// in k (a shorter one that contained k would sort before k).
func (x *prefixIndex) overlapping(k prefixKey, fn func(prefixKey, uint64) bool) {
	if k.v6 {
		x.overlapping6(k, fn)
		return
	}
	if x.v4.Len() == 0 {
		return
	}
	more := true
	for b := uint8(0); b < k.bits && more; b++ {
		if x.lengths[0][b] == 0 {
			continue
		}
		a := v4Key(k.maskTo(b))
		x.v4.AscendGreaterOrEqual(v4Item{a, 0}, func(it v4Item) bool {
			if it.k != a {
				return false
			}
			more = fn(prefixKey{hi: it.k >> 8 << 32, bits: uint8(it.k)}, it.id)
			return more
		})
	}
	if !more {
		return
	}
	lastHi, _ := k.last()
	last := lastHi >> 24
	x.v4.AscendGreaterOrEqual(v4Item{v4Key(k), 0}, func(it v4Item) bool {
		if it.k>>8 > last>>8 {
			return false
		}
		return fn(prefixKey{hi: it.k >> 8 << 32, bits: uint8(it.k)}, it.id)
	})
}

func (x *prefixIndex) overlapping6(k prefixKey, fn func(prefixKey, uint64) bool) {
	if x.v6.Len() == 0 {
		return
	}
	more := true
	for b := uint8(0); b < k.bits && more; b++ {
		if x.lengths[1][b] == 0 {
			continue
		}
		a := k.maskTo(b)
		x.v6.AscendGreaterOrEqual(v6Item{a.hi, a.lo, 0, b}, func(it v6Item) bool {
			if it.hi != a.hi || it.lo != a.lo || it.bits != b {
				return false
			}
			more = fn(prefixKey{it.hi, it.lo, it.bits, true}, it.id)
			return more
		})
	}
	if !more {
		return
	}
	lastHi, lastLo := k.last()
	x.v6.AscendGreaterOrEqual(v6Item{k.hi, k.lo, 0, k.bits}, func(it v6Item) bool {
		if it.hi > lastHi || (it.hi == lastHi && it.lo > lastLo) {
			return false
		}
		return fn(prefixKey{it.hi, it.lo, it.bits, true}, it.id)
	})
}

// first returns the first entry overlapping k in index order.
func (x *prefixIndex) first(k prefixKey) (prefixKey, uint64, bool) {
	var (
		fk    prefixKey
		fid   uint64
		found bool
	)
	x.overlapping(k, func(p prefixKey, id uint64) bool {
		fk, fid, found = p, id, true
		return false
	})
	return fk, fid, found
}

// reverseDomain is d with its labels in reverse order, each followed by a
// dot: "www.example.com" -> "com.example.www.". A domain's subdomains are
// exactly the domains whose reversed form starts with its reversed form.
func reverseDomain(d string) string {
	var b strings.Builder
	b.Grow(len(d) + 1)
	for end := len(d); ; {
		i := strings.LastIndexByte(d[:end], '.')
		b.WriteString(d[i+1 : end])
		b.WriteByte('.')
		if i < 0 {
			break
		}
		end = i
	}
	return b.String()
}

// keyItem is one entry of a keyIndex.
type keyItem struct {
	key string
	id  uint64
}

func lessKeyItem(a, b keyItem) bool {
	return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.id, b.id)) < 0
}

// keyIndex holds (string, id) pairs in order: reversed domains, or the
// exact keys of the other indicators.
type keyIndex struct{ t *btree.BTreeG[keyItem] }

func newKeyIndex() keyIndex { return keyIndex{btree.NewG(btreeDegree, lessKeyItem)} }

func (x keyIndex) add(key string, id uint64)    { x.t.ReplaceOrInsert(keyItem{key, id}) }
func (x keyIndex) remove(key string, id uint64) { x.t.Delete(keyItem{key, id}) }

// withPrefix calls fn for every entry whose key starts with p, in order,
// until fn returns false; it reports whether fn always returned true.
func (x keyIndex) withPrefix(p string, exact bool, fn func(uint64) bool) bool {
	more := true
	x.t.AscendGreaterOrEqual(keyItem{p, 0}, func(it keyItem) bool {
		if exact && it.key != p || !strings.HasPrefix(it.key, p) {
			return false
		}
		more = fn(it.id)
		return more
	})
	return more
}

// domainOverlapping calls fn for every entry of the reversed-domain index
// x that overlaps the domain whose reversed form is rev: its parents
// (shorter prefixes of rev ending at a dot), itself and its subdomains.
func (x keyIndex) domainOverlapping(rev string, fn func(uint64) bool) {
	for i := 0; i < len(rev)-1; i++ {
		if rev[i] == '.' && !x.withPrefix(rev[:i+1], true, fn) {
			return
		}
	}
	x.withPrefix(rev, false, fn)
}

// indicatorIndex finds the policies of one action whose indicators
// overlap an indicator.
type indicatorIndex struct {
	prefixes *prefixIndex
	domains  keyIndex // by reversed domain
	exact    keyIndex // by "type:value"
}

func newIndicatorIndex() indicatorIndex {
	return indicatorIndex{prefixes: newPrefixIndex(), domains: newKeyIndex(), exact: newKeyIndex()}
}

func (x indicatorIndex) len() int {
	return x.prefixes.len() + x.domains.t.Len() + x.exact.t.Len()
}

// ikey is how an indicator is indexed: by prefix, reversed domain or
// exact key (see the package comment above).
type ikey struct {
	kind   uint8 // kindPrefix, kindDomain, kindExact
	prefix prefixKey
	str    string
}

const (
	kindPrefix uint8 = iota + 1
	kindDomain
	kindExact
)

func (x indicatorIndex) add(k ikey, id uint64) {
	switch k.kind {
	case kindPrefix:
		x.prefixes.add(k.prefix, id)
	case kindDomain:
		x.domains.add(k.str, id)
	default:
		x.exact.add(k.str, id)
	}
}

func (x indicatorIndex) remove(k ikey, id uint64) {
	switch k.kind {
	case kindPrefix:
		x.prefixes.remove(k.prefix, id)
	case kindDomain:
		x.domains.remove(k.str, id)
	default:
		x.exact.remove(k.str, id)
	}
}

// overlapping calls fn with the ID of every entry that overlaps k, until
// fn returns false. An entry may be reported once only.
func (x indicatorIndex) overlapping(k ikey, fn func(uint64) bool) {
	switch k.kind {
	case kindPrefix:
		x.prefixes.overlapping(k.prefix, func(_ prefixKey, id uint64) bool { return fn(id) })
	case kindDomain:
		x.domains.domainOverlapping(k.str, fn)
	default:
		x.exact.withPrefix(k.str, true, fn)
	}
}
