package responders

import (
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// The compact forms below let the reconciler and the dry run hold a
// million entries without a string, a pointer or an allocation each.

// addrKey is the 16-byte form of a single-address indicator: an IPv4
// address as IPv4-mapped IPv6.
type addrKey [16]byte

// addrKeyOf returns the 16-byte form of ind when ind is a single address
// written canonically, so that its key can be rebuilt from the 16 bytes:
// an IPv4 address, or an IPv6 address neither zoned nor IPv4-mapped (the
// mapped form reads back as IPv4). Every other indicator is held by its
// key string.
func addrKeyOf(ind intel.Indicator) (addrKey, bool) {
	if ind.Type != intel.IPv4 && ind.Type != intel.IPv6 {
		return addrKey{}, false
	}
	a, err := netip.ParseAddr(ind.Value)
	if err != nil || a.Zone() != "" || a.Is4() != (ind.Type == intel.IPv4) || a.Is4In6() {
		return addrKey{}, false
	}
	var buf [64]byte
	if string(a.AppendTo(buf[:0])) != ind.Value {
		return addrKey{}, false
	}
	return a.As16(), true
}

func (k addrKey) addr() netip.Addr { return netip.AddrFrom16(k).Unmap() }

func (k addrKey) typ() intel.IndicatorType {
	if netip.AddrFrom16(k).Is4In6() {
		return intel.IPv4
	}
	return intel.IPv6
}

// indicator is the indicator k is the form of.
func (k addrKey) indicator() intel.Indicator {
	return intel.Indicator{Type: k.typ(), Value: k.addr().String()}
}

// appendKey appends the indicator's key (Indicator.Key) to b.
func (k addrKey) appendKey(b []byte) []byte {
	b = append(b, k.typ()...)
	b = append(b, ':')
	return k.addr().AppendTo(b)
}

// key is the indicator's key.
func (k addrKey) key() string {
	var buf [64]byte
	return string(k.appendKey(buf[:0]))
}

// hash is KeyHash of the indicator's key, without building it.
func (k addrKey) hash() uint64 {
	var buf [64]byte
	return KeyHashBytes(k.appendKey(buf[:0]))
}

// parseKey is the indicator of a key (Indicator.Key): its type and
// value are parts of the key's string.
func parseKey(key string) intel.Indicator {
	i := strings.IndexByte(key, ':')
	if i < 0 {
		return intel.Indicator{Value: key}
	}
	return intel.Indicator{Type: intel.IndicatorType(key[:i]), Value: key[i+1:]}
}

// compactID returns the 8 bytes of a policy ID in its usual form (16
// lowercase hexadecimal digits, intel.PolicyID).
func compactID(id string) (uint64, bool) {
	if len(id) != 16 {
		return 0, false
	}
	var v uint64
	for i := 0; i < 16; i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// hexID is the policy ID of compactID's form.
func hexID(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b[:])
}

// compactTime returns t in Unix nanoseconds when time.Unix(0, n).UTC()
// gives t back exactly (a UTC time without a monotonic reading, within
// the years 1678 to 2262), as the policies of the mesh are.
func compactTime(t time.Time) (int64, bool) {
	n := t.UnixNano()
	return n, time.Unix(0, n).UTC() == t
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

var minNanos, maxNanos = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// clampNanos is t in Unix nanoseconds, clamped to the range an int64
// holds: the order of times is kept, ties aside beyond the range.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// interner holds each distinct string once, counting its users, and
// forgets it when the last one goes.
type interner struct {
	idx  map[string]uint32
	recs []internRec
	free []uint32
}

type internRec struct {
	s    string
	refs uint32
}

func (in *interner) ref(s string) uint32 {
	if i, ok := in.idx[s]; ok {
		in.recs[i].refs++
		return i
	}
	if in.idx == nil {
		in.idx = make(map[string]uint32)
	}
	s = strings.Clone(s) // not a part of a larger string the source holds
	var i uint32
	if n := len(in.free); n > 0 {
		i = in.free[n-1]
		in.free = in.free[:n-1]
		in.recs[i] = internRec{s: s, refs: 1}
	} else {
		i = uint32(len(in.recs))
		in.recs = append(in.recs, internRec{s: s, refs: 1})
	}
	in.idx[s] = i
	return i
}

func (in *interner) unref(i uint32) {
	r := &in.recs[i]
	if r.refs--; r.refs == 0 {
		delete(in.idx, r.s)
		*r = internRec{}
		in.free = append(in.free, i)
	}
}

func (in *interner) str(i uint32) string { return in.recs[i].s }
