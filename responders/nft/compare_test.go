package nft_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/nft"
)

func keysOf(ps []intel.Policy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Indicator.Key())
	}
	slices.Sort(out)
	return out
}

func indKeys(inds []intel.Indicator) []string {
	var out []string
	for _, ind := range inds {
		out = append(out, ind.Key())
	}
	slices.Sort(out)
	return out
}

// Compare answers from the digest of the view when it matches and the
// comparison need not be thorough, and otherwise finds what to add,
// remove and refresh; neither reads the kernel.
func TestCompare(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	a, b, n := block(t, "203.0.113.1", time.Hour), block(t, "2001:db8::1", time.Hour), block(t, "198.51.100.0/24", time.Hour)
	if err := f.Apply(ctx, []intel.Policy{a, b, n}, nil); err != nil {
		t.Fatal(err)
	}
	fulls := f.Stats().FullReads
	compare := func(thorough bool, ps ...intel.Policy) (add, remove, refresh []string) {
		t.Helper()
		ad, rm, rf, err := f.Compare(ctx, responders.NewDesiredSet(ps, thorough))
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(ad), indKeys(rm), keysOf(rf)
	}
	if ad, rm, rf := compare(false, a, b, n, block(t, "evil.example", time.Hour)); ad != nil || rm != nil || rf != nil {
		t.Errorf("same keys: add %v remove %v refresh %v", ad, rm, rf)
	}
	if got := f.Stats().DigestMatches; got != 1 {
		t.Errorf("DigestMatches = %d, want 1", got)
	}
	c := block(t, "203.0.113.3", time.Hour)
	ad, rm, rf := compare(false, a, c, n)
	if fmt.Sprint(ad, rm, rf) != "[ipv4:203.0.113.3] [ipv6:2001:db8::1] []" {
		t.Errorf("changed keys: add %v remove %v refresh %v", ad, rm, rf)
	}
	longer := a
	longer.ExpiresAt = a.ExpiresAt.Add(time.Hour)
	if ad, rm, rf := compare(false, longer, b, n); ad != nil || rm != nil || rf != nil {
		t.Errorf("an extension with the same keys, not thorough: add %v remove %v refresh %v", ad, rm, rf)
	}
	ad, rm, rf = compare(true, longer, b, n)
	if fmt.Sprint(ad, rm, rf) != "[] [] [ipv4:203.0.113.1]" {
		t.Errorf("an extension, thorough: add %v remove %v refresh %v", ad, rm, rf)
	}
	if got := f.Stats().FullReads; got != fulls {
		t.Errorf("Compare read the kernel %d times", got-fulls)
	}
}

// The view is read from the kernel once, and then only when the ruleset
// generation shows another writer: no periodic full read.
func TestNoPeriodicFullRead(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	if err := f.Apply(ctx, []intel.Policy{block(t, "203.0.113.1", time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	start := f.Stats().FullReads
	desired := responders.NewDesiredSet([]intel.Policy{block(t, "203.0.113.1", time.Hour)}, false)
	for range 25 {
		if _, err := f.Current(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := f.Compare(ctx, desired); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.Stats().FullReads - start; got != 0 {
		t.Errorf("%d full reads in 50 calls, want none", got)
	}
	other, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	if err := other.SetDeleteElements(&nftables.Set{Table: tb, Name: "v4", KeyType: nftables.TypeIPAddr},
		[]nftables.SetElement{{Key: netip.MustParseAddr("203.0.113.1").AsSlice()}}); err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	add, _, _, err := f.Compare(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Stats().FullReads - start; got != 1 || len(add) != 1 {
		t.Errorf("after a foreign change: %d full reads, add %v; want 1 and the deleted element", got, add)
	}
}

// Changes larger than a batch travel in several transactions (pipelined)
// and land whole: addresses of both families and networks, added,
// replaced and removed, as the kernel shows them.
func TestManyBatches(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns, nft.WithBatchSize(64))
	ctx := t.Context()
	var first []intel.Policy
	for i := range 300 {
		first = append(first, block(t, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String(), time.Hour))
		first = append(first, block(t, fmt.Sprintf("2001:db8::%x", i+1), time.Hour))
	}
	for i := range 40 {
		first = append(first, block(t, fmt.Sprintf("10.%d.0.0/16", i), time.Hour))
	}
	if err := f.Apply(ctx, first, nil); err != nil {
		t.Fatal(err)
	}
	batches := f.Stats().Batches
	if batches < 10 {
		t.Fatalf("%d batches for %d elements in batches of 64", batches, len(first))
	}
	// Remove every other one, extend the rest.
	var remove []intel.Indicator
	var extend []intel.Policy
	want := map[string]bool{}
	for i, p := range first {
		if i%2 == 0 {
			remove = append(remove, p.Indicator)
			continue
		}
		p.ExpiresAt = p.ExpiresAt.Add(time.Hour)
		extend = append(extend, p)
		if pfx, _ := p.Indicator.Prefix(); p.Indicator.Type == intel.CIDR {
			want["start:"+pfx.Addr().String()] = true
		} else {
			want[p.Indicator.Key()] = true
		}
	}
	if err := f.Apply(ctx, extend, remove); err != nil {
		t.Fatal(err)
	}
	got := kernelKeys(t, ns)
	if len(got) != len(want) {
		t.Fatalf("the kernel holds %d elements, want %d", len(got), len(want))
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("the kernel lacks %s", k)
		}
	}
	if st := f.Stats(); st.Refreshed != uint64(len(extend)) || st.Removed != uint64(len(remove)) {
		t.Errorf("stats %+v, want %d refreshed and %d removed", st, len(extend), len(remove))
	}
}

// Holds answers for one indicator from the view: addresses, networks and
// networks nested in a wider one, and not what another writer removed.
func TestHolds(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	a, n, inner := block(t, "203.0.113.1", time.Hour), block(t, "198.51.100.0/24", time.Hour), block(t, "198.51.100.128/25", time.Hour)
	if err := f.Apply(ctx, []intel.Policy{a, n, inner}, nil); err != nil {
		t.Fatal(err)
	}
	holds := func(ind intel.Indicator) bool {
		t.Helper()
		ok, err := f.Holds(ctx, ind)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, p := range []intel.Policy{a, n, inner} {
		if !holds(p.Indicator) {
			t.Errorf("Holds(%s) = false", p.Indicator.Key())
		}
	}
	for _, s := range []string{"203.0.113.2", "198.51.100.7", "198.51.0.0/16", "2001:db8::1", "example"} {
		if holds(ind(t, s)) {
			t.Errorf("Holds(%s) = true", s)
		}
	}
	other, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	if err := other.SetDeleteElements(&nftables.Set{Table: tb, Name: "v4", KeyType: nftables.TypeIPAddr},
		[]nftables.SetElement{{Key: netip.MustParseAddr("203.0.113.1").AsSlice()}}); err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if holds(a.Indicator) {
		t.Error("Holds sees an element another writer deleted")
	}
}
