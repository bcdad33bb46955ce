package responders

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// A refTable holds exactly what a map would through random inserts and
// deletes, with hashes that collide a lot (every probe sequence, the
// wrap at the end of the slots, and the shifts back on deletion are
// exercised), growing and shrinking.
func TestRefTableMatchesMap(t *testing.T) {
	for _, buckets := range []uint64{3, 64, 1 << 40} {
		rng := rand.New(rand.NewPCG(7, buckets))
		keys := make([]uint64, 5000) // by ref
		for i := range keys {
			keys[i] = rng.Uint64()
		}
		hash := func(ref int32) uint64 { return keys[ref] % buckets * 0x9e3779b97f4a7c15 }
		tab := newRefTable(hash)
		want := map[int32]bool{}
		check := func(step int) {
			t.Helper()
			if tab.Len() != len(want) {
				t.Fatalf("buckets %d, step %d: Len %d, want %d", buckets, step, tab.Len(), len(want))
			}
			for ref := range int32(len(keys)) {
				got, ok := tab.find(hash(ref), func(r int32) bool { return r == ref })
				if ok != want[ref] || ok && got != ref {
					t.Fatalf("buckets %d, step %d: find(%d) = %d, %v; want held %v", buckets, step, ref, got, ok, want[ref])
				}
			}
			var all []int32
			for ref := range tab.all {
				all = append(all, ref)
			}
			slices.Sort(all)
			var wantAll []int32
			for ref := range want {
				wantAll = append(wantAll, ref)
			}
			slices.Sort(wantAll)
			if !slices.Equal(all, wantAll) {
				t.Fatalf("buckets %d, step %d: all yields %d refs, want %d", buckets, step, len(all), len(wantAll))
			}
		}
		for step := range 20_000 {
			ref := int32(rng.IntN(len(keys)))
			// Fill up for the first half, then empty out: the table
			// grows, then shrinks.
			if fill := step < 10_000; fill && rng.IntN(4) != 0 || !fill && rng.IntN(4) == 0 {
				if !want[ref] {
					tab.insert(ref)
					want[ref] = true
				}
			} else {
				tab.delete(ref)
				delete(want, ref)
			}
			if step%997 == 0 {
				check(step)
			}
		}
		for ref := range want {
			tab.delete(ref)
			delete(want, ref)
		}
		check(-1)
		if len(tab.slots) > 1024 {
			t.Errorf("buckets %d: an empty table keeps %d slots", buckets, len(tab.slots))
		}
	}
}
