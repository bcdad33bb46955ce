package node

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The ID set agrees with a map through random adds and removals over a
// small range of IDs (so that runs collide and wrap around the table's
// end, and removals shift entries back), with ID 0 among them, as it
// grows and shrinks.
func TestIDSetMatchesAMap(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		s := newIDSet()
		model := map[uint64]bool{}
		span := uint64(50 + rng.IntN(3000))
		for step := range 20_000 {
			id := rng.Uint64N(span)
			if rng.IntN(3) == 0 {
				id = rng.Uint64() // anywhere
			}
			if rng.IntN(2) == 0 || step > 15_000 {
				if got, want := s.Remove(id), model[id]; got != want {
					t.Fatalf("seed %d step %d: Remove(%d) = %v, want %v", seed, step, id, got, want)
				}
				delete(model, id)
			} else {
				if got, want := s.Add(id), !model[id]; got != want {
					t.Fatalf("seed %d step %d: Add(%d) = %v, want %v", seed, step, id, got, want)
				}
				model[id] = true
			}
			if s.Len() != len(model) {
				t.Fatalf("seed %d step %d: Len %d, want %d", seed, step, s.Len(), len(model))
			}
			if step%997 == 0 {
				for k := range model {
					if !s.Has(k) {
						t.Fatalf("seed %d step %d: %d lost", seed, step, k)
					}
				}
				all := slices.Collect(s.All())
				if len(all) != len(model) {
					t.Fatalf("seed %d step %d: All yields %d, want %d", seed, step, len(all), len(model))
				}
				for _, k := range all {
					if !model[k] {
						t.Fatalf("seed %d step %d: All yields %d, not held", seed, step, k)
					}
				}
			}
		}
		for k := range span {
			if s.Has(k) != model[k] {
				t.Fatalf("seed %d: Has(%d) = %v, want %v", seed, k, s.Has(k), model[k])
			}
		}
		if len(s.slots) > 4*idSetMin && s.n*8 < len(s.slots) {
			t.Fatalf("seed %d: %d IDs in %d slots: never shrunk", seed, s.n, len(s.slots))
		}
	}
}

// A million IDs cost 16 MiB of table (8 bytes a slot, at most 3/4 full).
func TestIDSetSize(t *testing.T) {
	s := newIDSet()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		s.Add(rng.Uint64())
	}
	if got := len(s.slots) * 8; got > 16<<20 {
		t.Fatalf("a million IDs in %d bytes of table, want at most 16 MiB", got)
	}
}
