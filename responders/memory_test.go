package responders_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// addressBlocks returns n blocks of distinct IPv4 addresses.
func addressBlocks(n int, now time.Time) []intel.Policy {
	ps := make([]intel.Policy, n)
	for i := range ps {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ps[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", now, time.Hour)
	}
	return ps
}

// BenchmarkDesiredMemory reports the live heap per policy of a
// reconciler's desired state (a first pass over a million address
// blocks read in pages, handed to a backend that holds nothing) and of a
// dry run holding as many entries. The policies themselves are held by
// the source throughout and not counted.
//
//	go test ./responders -run '^$' -bench DesiredMemory -benchtime 1x
func BenchmarkDesiredMemory(b *testing.B) {
	const n = 1_000_000
	now := time.Now()
	ps := addressBlocks(n, now)
	b.Run(fmt.Sprintf("reconciler/policies=%d", n), func(b *testing.B) {
		src := newFeed(ps...)
		src.MeshPage("", 1, now) // sort the IDs once
		var perPolicy float64
		for b.Loop() {
			before := heapInUse()
			r := responders.NewReconciler(src, []responders.Backend{&discard{}}, responders.Options{})
			if err := r.ReconcileOnce(b.Context()); err != nil {
				b.Fatal(err)
			}
			perPolicy = float64(heapInUse()-before) / n
			if got := r.Stats().Added; got != n {
				b.Fatalf("added %d, want %d", got, n)
			}
			r.Close()
		}
		b.ReportMetric(perPolicy, "B/policy")
	})
	b.Run(fmt.Sprintf("dry-run/policies=%d", n), func(b *testing.B) {
		var perPolicy float64
		for b.Loop() {
			before := heapInUse()
			d := responders.NewDryRun(nil)
			for i := 0; i < n; i += 10_000 {
				if err := d.Apply(b.Context(), ps[i:i+10_000], nil); err != nil {
					b.Fatal(err)
				}
			}
			perPolicy = float64(heapInUse()-before) / n
			if !d.Has(ps[n-1].Indicator) {
				b.Fatal("the dry run lost an entry")
			}
		}
		b.ReportMetric(perPolicy, "B/policy")
	})
}

// BenchmarkDesiredSetRead reads a desired set of a million addresses
// whole, as a thorough Comparer does: through All (each key and policy
// rebuilt) and through Entries (the address alone).
//
//	go test ./responders -run '^$' -bench DesiredSetRead -benchtime 3x -benchmem
func BenchmarkDesiredSetRead(b *testing.B) {
	const n = 1_000_000
	d := responders.NewDesiredSet(addressBlocks(n, time.Now()), false)
	b.Run("All", func(b *testing.B) {
		for b.Loop() {
			seen := 0
			for _, p := range d.All() {
				if p.Indicator.Type == intel.IPv4 {
					seen++
				}
			}
			if seen != n {
				b.Fatalf("read %d entries", seen)
			}
		}
	})
	b.Run("Entries", func(b *testing.B) {
		for b.Loop() {
			seen := 0
			for e := range d.Entries() {
				if a, ok := e.Addr(); ok && a.Is4() {
					seen++
				}
			}
			if seen != n {
				b.Fatalf("read %d entries", seen)
			}
		}
	})
}

// A reconciler holding 100,000 address blocks and a dry run enforcing
// them stay within a bound per policy (about 120 and 26 bytes are
// measured; policies held whole cost some 470 and 250).
func TestMemoryPerPolicyBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates some 100 MB")
	}
	const n = 100_000
	ps := addressBlocks(n, time.Now())
	src := newFeed(ps...)
	src.MeshPage("", 1, time.Now()) // sort the IDs once
	before := heapInUse()
	d := responders.NewDryRun(nil)
	if err := d.Apply(t.Context(), ps, nil); err != nil {
		t.Fatal(err)
	}
	after := heapInUse()
	dry := (float64(after) - float64(before)) / n
	r := responders.NewReconciler(src, []responders.Backend{&discard{}}, responders.Options{})
	defer r.Close()
	if err := r.ReconcileOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	reconciler := (float64(heapInUse()) - float64(after)) / n
	t.Logf("bytes per policy: reconciler %.1f, dry run %.1f", reconciler, dry)
	if reconciler > 200 || dry > 60 {
		t.Errorf("bytes per policy: reconciler %.1f (bound 200), dry run %.1f (bound 60)", reconciler, dry)
	}
	runtime.KeepAlive(ps)
	runtime.KeepAlive(r)
	runtime.KeepAlive(d)
}
