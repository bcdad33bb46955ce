package nft_test

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A random run of network additions and removals, nested in every way,
// leaves the kernel holding exactly the outermost of the networks held,
// and the rest listed as nested.
func TestNetworksRandom(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(5, 6))
	var universe []netip.Prefix
	for _, s := range []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.3.0/24", "10.1.2.128/25", "10.2.0.0/16",
		"10.2.0.0/24", "10.0.0.0/16", "11.0.0.0/8", "11.1.1.0/24", "0.0.0.0/1", "128.0.0.0/1", "255.0.0.0/8", "fd00::/8", "fd00:1::/32", "fd00:1:2::/48", "fd01::/16"} {
		universe = append(universe, netip.MustParsePrefix(s))
	}
	held := map[netip.Prefix]bool{}
	for step := range 200 {
		var add []intel.Policy
		var remove []intel.Indicator
		for range 1 + rng.IntN(3) {
			p := universe[rng.IntN(len(universe))]
			ind := intel.Indicator{Type: intel.CIDR, Value: p.String()}
			if rng.IntN(2) == 0 {
				add = append(add, intel.NewPolicy(intel.ActionBlock, ind, "", "operator:test", time.Now(), time.Duration(1+rng.IntN(3))*time.Hour))
			} else {
				remove = append(remove, ind)
			}
		}
		if err := f.Apply(ctx, add, remove); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for _, ind := range remove {
			delete(held, netip.MustParsePrefix(ind.Value))
		}
		for _, p := range add {
			held[netip.MustParsePrefix(p.Indicator.Value)] = true
		}
		var wantOuter, wantNested []string
		for p := range held {
			inner := false
			for q := range held {
				if q != p && q.Bits() < p.Bits() && q.Addr().BitLen() == p.Addr().BitLen() && q.Contains(p.Addr()) {
					inner = true
				}
			}
			if inner {
				wantNested = append(wantNested, "cidr:"+p.String())
			} else {
				wantOuter = append(wantOuter, "start:"+p.Addr().String())
			}
		}
		slices.Sort(wantOuter)
		slices.Sort(wantNested)
		var gotOuter []string
		for k := range kernelKeys(t, ns) {
			gotOuter = append(gotOuter, k)
		}
		slices.Sort(gotOuter)
		entries, err := f.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var gotNested []string
		for _, e := range entries {
			if e.Nested {
				gotNested = append(gotNested, e.Indicator.Key())
			}
		}
		slices.Sort(gotNested)
		if !slices.Equal(gotOuter, wantOuter) || !slices.Equal(gotNested, wantNested) {
			t.Fatalf("step %d: kernel %v nested %v; want kernel %v nested %v", step, gotOuter, gotNested, wantOuter, wantNested)
		}
	}
}
