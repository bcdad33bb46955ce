package nft_test

import (
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/nft"
)

// addrPolicies returns n block policies for distinct IPv4 addresses in
// 10.0.0.0/8, starting at offset.
func addrPolicies(n, offset int) []intel.Policy {
	now := time.Now()
	out := make([]intel.Policy, n)
	for i := range n {
		v := 10<<24 | (offset + i)
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		out[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", now, time.Hour)
	}
	return out
}

// benchApplyEmpty applies n addresses to an empty set.
func benchApplyEmpty(b *testing.B, n int, opts ...nft.Option) {
	ns := newNS(b)
	f := newFirewall(b, ns, opts...)
	ctx := b.Context()
	add := addrPolicies(n, 0)
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		if err := f.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Current(ctx); err != nil { // recreate the empty table
			b.Fatal(err)
		}
		runtime.GC() // the set-up's garbage is not the Apply's
		b.StartTimer()
		c0 := testenv.ProcessCPU(b)
		if err := f.Apply(ctx, add, nil); err != nil {
			b.Fatal(err)
		}
		cpu += testenv.ProcessCPU(b) - c0
	}
	b.ReportMetric(float64(len(add)*b.N)/b.Elapsed().Seconds(), "elements/s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/apply")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/apply")
}

// BenchmarkApply100kEmpty applies 100,000 addresses to an empty set.
func BenchmarkApply100kEmpty(b *testing.B) { benchApplyEmpty(b, 100_000) }

// BenchmarkApply1MEmpty applies 1,000,000 addresses to an empty set
// (s/apply is the time of one Apply; the aim is under 2 s).
func BenchmarkApply1MEmpty(b *testing.B) { benchApplyEmpty(b, 1_000_000) }

// BenchmarkApply1MEmptyBatch2048 is BenchmarkApply1MEmpty in the batches
// of 2,048 elements the backend used to send.
func BenchmarkApply1MEmptyBatch2048(b *testing.B) {
	benchApplyEmpty(b, 1_000_000, nft.WithBatchSize(2048))
}

// BenchmarkApply1kTo100k adds 1,000 addresses to a set of 100,000.
func BenchmarkApply1kTo100k(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	if err := f.Apply(ctx, addrPolicies(100_000, 0), nil); err != nil {
		b.Fatal(err)
	}
	extra := addrPolicies(1000, 200_000)
	var remove []intel.Indicator
	for _, p := range extra {
		remove = append(remove, p.Indicator)
	}
	for b.Loop() {
		b.StopTimer()
		if err := f.Apply(ctx, nil, remove); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f.Apply(ctx, extra, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyDelta1kOn1M is the change of one reconcile pass on a
// backend holding 1,000,000 addresses: 1,000 added and the 1,000 added
// by the previous iteration removed, in one Apply.
func BenchmarkApplyDelta1kOn1M(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	if err := f.Apply(ctx, addrPolicies(1_000_000, 0), nil); err != nil {
		b.Fatal(err)
	}
	fulls := f.Stats().FullReads
	var prev []intel.Indicator
	i := 0
	for b.Loop() {
		add := addrPolicies(1000, 2_000_000+1000*(i%64))
		i++
		if err := f.Apply(ctx, add, prev); err != nil {
			b.Fatal(err)
		}
		prev = prev[:0]
		for _, p := range add {
			prev = append(prev, p.Indicator)
		}
	}
	b.ReportMetric(float64(f.Stats().FullReads-fulls), "fullreads")
}

// benchCurrent reads back a set of 100,000 addresses, with the given
// options.
func benchCurrent(b *testing.B, opts ...nft.Option) {
	ns := newNS(b)
	f := newFirewall(b, ns, opts...)
	ctx := b.Context()
	if err := f.Apply(ctx, addrPolicies(100_000, 0), nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		cur, err := f.Current(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(cur) != 100_000 {
			b.Fatalf("Current has %d entries", len(cur))
		}
	}
	st := f.Stats()
	b.ReportMetric(float64(st.FullReads), "fullreads")
}

// BenchmarkCurrent100k answers every call from the view after the
// generation check (the default).
func BenchmarkCurrent100k(b *testing.B) { benchCurrent(b) }

// BenchmarkCurrent100kFull reads the sets back on every call.
func BenchmarkCurrent100kFull(b *testing.B) {
	benchCurrent(b, nft.WithFullReadEvery(1, 24*time.Hour))
}

// BenchmarkRefresh100k is the Refresh of 100,000 held policies, none
// extended.
func BenchmarkRefresh100k(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	held := addrPolicies(100_000, 0)
	if err := f.Apply(ctx, held, nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		n, err := f.Refresh(ctx, held)
		if err != nil {
			b.Fatal(err)
		}
		if n != 0 {
			b.Fatalf("Refresh replaced %d", n)
		}
	}
}

// pagedSource is a responders.StateSource with a change feed over a fixed
// list of mesh-wide policies: the first read finds the feed lost and
// reads the pages; after that there is no change.
type pagedSource struct{ mesh []intel.Policy } // sorted by ID

func (s *pagedSource) MeshPolicies(time.Time) []intel.Policy   { return s.mesh }
func (s *pagedSource) LocalDecisions(time.Time) []intel.Policy { return nil }
func (s *pagedSource) Protected() []netip.Prefix               { return nil }

func (s *pagedSource) MeshChanges(since uint64, _ int) ([]responders.MeshChange, uint64, bool) {
	return nil, 1, since == 1
}

func (s *pagedSource) MeshCount() int { return len(s.mesh) }

func (s *pagedSource) MeshPage(after string, limit int, _ time.Time) ([]intel.Policy, string) {
	i := 0
	if after != "" {
		lo, hi := 0, len(s.mesh)
		for lo < hi {
			m := (lo + hi) / 2
			if s.mesh[m].ID <= after {
				lo = m + 1
			} else {
				hi = m
			}
		}
		i = lo
	}
	j := min(len(s.mesh), i+limit)
	if j == len(s.mesh) {
		return s.mesh[i:j], ""
	}
	return s.mesh[i:j], s.mesh[j-1].ID
}

// BenchmarkReconcilePass1M is a full reconcile pass (the safety net)
// with nothing to change, over 1,000,000 addresses held by the nftables
// backend: the generation check, and the digests of the desired keys and
// of the view compared. The kernel is not read (fullreads: none after the
// first pass).
func BenchmarkReconcilePass1M(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	mesh := addrPolicies(1_000_000, 0)
	sortByID(mesh)
	r := responders.NewReconciler(&pagedSource{mesh: mesh}, []responders.Backend{f}, responders.Options{})
	defer r.Close()
	if err := r.ReconcileOnce(ctx); err != nil {
		b.Fatal(err)
	}
	added := r.Stats().Added
	fulls := f.Stats().FullReads
	for b.Loop() {
		if err := r.ReconcileOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if st := r.Stats(); st.Added != added || st.Added != 1_000_000 {
		b.Fatalf("passes added %d entries, want 1,000,000 on the first alone", st.Added)
	}
	b.ReportMetric(float64(f.Stats().FullReads-fulls), "fullreads")
}

func sortByID(ps []intel.Policy) {
	slices.SortFunc(ps, func(a, b intel.Policy) int { return strings.Compare(a.ID, b.ID) })
}

// BenchmarkCompare1MThorough is the comparison a full pass makes when it
// must be thorough (after a failed change): every one of 1,000,000
// desired addresses looked up in the view.
func BenchmarkCompare1MThorough(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	ps := addrPolicies(1_000_000, 0)
	if err := f.Apply(ctx, ps, nil); err != nil {
		b.Fatal(err)
	}
	desired := responders.NewDesiredSet(ps, true)
	for b.Loop() {
		add, remove, refresh, err := f.Compare(ctx, desired)
		if err != nil {
			b.Fatal(err)
		}
		if len(add)+len(remove)+len(refresh) != 0 {
			b.Fatalf("a comparison with nothing to do found %d, %d, %d", len(add), len(remove), len(refresh))
		}
	}
}

// netPolicies returns n block policies for distinct /24 networks in
// 10.0.0.0/8 and 11.0.0.0/8, starting at offset.
func netPolicies(n, offset int) []intel.Policy {
	now := time.Now()
	out := make([]intel.Policy, n)
	for i := range n {
		v := offset + i
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + v>>16), byte(v >> 8), byte(v), 0}), 24)
		out[i] = intel.NewPolicy(intel.ActionBlock, intel.Indicator{Type: intel.CIDR, Value: pfx.String()}, "bench", "operator:bench", now, time.Hour)
	}
	return out
}

// BenchmarkApplyNetDelta10On100k adds 10 networks to a backend holding
// 100,000 and removes the 10 added before.
func BenchmarkApplyNetDelta10On100k(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	if err := f.Apply(ctx, netPolicies(100_000, 0), nil); err != nil {
		b.Fatal(err)
	}
	var prev []intel.Indicator
	i := 0
	for b.Loop() {
		add := netPolicies(10, 100_000+10*(i%64))
		i++
		if err := f.Apply(ctx, add, prev); err != nil {
			b.Fatal(err)
		}
		prev = prev[:0]
		for _, p := range add {
			prev = append(prev, p.Indicator)
		}
	}
}
