package consensus

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshward/meshward/intel"
)

// randomPrefix is a prefix in a small space, so that overlaps are common:
// under 198.51.100.0/28 or 2001:db8::/124, or a few wider ones, and some
// IPv4-mapped IPv6 ones (another family for netip).
func randomPrefix(r *rand.Rand) netip.Prefix {
	switch r.IntN(8) {
	case 0:
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(16))})
		return netip.PrefixFrom(a, 124+r.IntN(5)).Masked()
	case 1:
		return netip.PrefixFrom(netip.MustParseAddr("::ffff:198.51.100.0"), 120+r.IntN(9)).Masked()
	case 2:
		return netip.PrefixFrom(netip.MustParseAddr("198.51.100.0"), r.IntN(29)).Masked()
	case 3:
		return netip.PrefixFrom(netip.MustParseAddr("2001:db8::"), r.IntN(125)).Masked()
	}
	a := netip.AddrFrom4([4]byte{198, 51, 100, byte(r.IntN(16))})
	return netip.PrefixFrom(a, 28+r.IntN(5)).Masked()
}

func comparePrefixes(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// TestPrefixIndexOverlapping checks the prefix index against a scan with
// netip.Prefix.Overlaps: the same entries, in sortedPrefixes order.
func TestPrefixIndexOverlapping(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := newPrefixIndex()
	held := map[netip.Prefix]bool{}
	for step := range 4000 {
		p := randomPrefix(r)
		if r.IntN(3) == 0 {
			x.remove(keyOfPrefix(p), 0)
			delete(held, p)
		} else {
			x.add(keyOfPrefix(p), 0)
			held[p] = true
		}
		q := randomPrefix(r)
		var want []netip.Prefix
		for h := range held {
			if h.Overlaps(q) {
				want = append(want, h)
			}
		}
		slices.SortFunc(want, comparePrefixes)
		var got []netip.Prefix
		x.overlapping(keyOfPrefix(q), func(k prefixKey, _ uint64) bool {
			got = append(got, k.prefix())
			return true
		})
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: overlapping %s = %v, want %v", step, q, got, want)
		}
		if x.len() != len(held) {
			t.Fatalf("step %d: %d entries, want %d", step, x.len(), len(held))
		}
	}
}

// TestIndicatorIndexOverlapping checks the indicator index against
// intel.Indicator.Overlaps for every type.
func TestIndicatorIndexOverlapping(t *testing.T) {
	pool := []string{
		"example.org", "a.example.org", "b.a.example.org", "ba.example.org", "a.example.net", "org-a.example.org",
		"https://a.example.org/x", "https://a.example.org/y",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"198.51.100.1", "198.51.100.0/30", "198.51.100.1/32", "2001:db8::1", "2001:db8::/126",
	}
	var inds []intel.Indicator
	for _, s := range pool {
		inds = append(inds, mustIndicator(t, s))
	}
	// Indicators whose values are not canonical are indexed by their
	// value as it is (a restored snapshot may hold them).
	inds = append(inds, intel.Indicator{Type: intel.IPv4, Value: "not-an-address"}, intel.Indicator{Type: "other", Value: "a.example.org"})
	x := newIndicatorIndex()
	for i, ind := range inds {
		x.add(indexKeyOf(ind), uint64(i))
	}
	for _, q := range inds {
		var want []uint64
		for i, ind := range inds {
			if q.Overlaps(ind) {
				want = append(want, uint64(i))
			}
		}
		var got []uint64
		x.overlapping(indexKeyOf(q), func(id uint64) bool {
			got = append(got, id)
			return true
		})
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("overlapping %s %s = %v, want %v", q.Type, q.Value, got, want)
		}
	}
}

func TestReverseDomain(t *testing.T) {
	for in, want := range map[string]string{"www.example.com": "com.example.www.", "com": "com.", "a..b": "b..a.", "": "."} {
		if got := reverseDomain(in); got != want {
			t.Errorf("reverseDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIDAfter checks the page cursor against the string order of IDs.
func TestIDAfter(t *testing.T) {
	ids := []uint64{0, 1, 0x0fffffffffffffff, 0x1000000000000000, 0xabc0000000000000, 0xabbfffffffffffff, 0xabcfffffffffffff, 0xabd0000000000000, ^uint64(0) - 1, ^uint64(0)}
	cursors := []string{"", "0", "00", "0000000000000000", "0000000000000001", "abc", "abc0000000000000", "abc0000000000000x", "abg", "abZ", "ab/", "ab:",
		"fffffffffffffffe", "ffffffffffffffff", "ffffffffffffffff0", "g", "fg", "ABC", "zzz", "~"}
	slices.Sort(ids)
	for _, c := range cursors {
		want, wantOK := uint64(0), false
		for _, id := range ids {
			if formatID(id) > c {
				want, wantOK = id, true
				break
			}
		}
		from, ok := idAfter(c)
		if ok != wantOK {
			t.Errorf("idAfter(%q) ok = %v, want %v", c, ok, wantOK)
			continue
		}
		if !ok {
			continue
		}
		// The first held ID at or after from must be the first held ID
		// after c.
		i, _ := slices.BinarySearch(ids, from)
		if i == len(ids) || ids[i] != want {
			t.Errorf("idAfter(%q) = %016x: first held ID from there is not %016x", c, from, want)
		}
		if formatID(from) <= c {
			t.Errorf("idAfter(%q) = %016x, not after it", c, from)
		}
		if from > 0 && formatID(from-1) > c {
			t.Errorf("idAfter(%q) = %016x, but %016x is after it too", c, from, from-1)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, id := range []string{"0000000000000000", "00ff00ff00ff00ff", "ffffffffffffffff", "0123456789abcdef"} {
		n, ok := parseID(id)
		if !ok || formatID(n) != id {
			t.Errorf("parseID(%q) = %x, %v", id, n, ok)
		}
	}
	for _, id := range []string{"", "0", "00000000000000000", "ABCDEF0123456789", "000000000000000g", "nope"} {
		if _, ok := parseID(id); ok {
			t.Errorf("parseID(%q) accepted", id)
		}
	}
}
