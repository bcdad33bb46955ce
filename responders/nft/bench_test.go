package nft_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
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

// BenchmarkApply100kEmpty applies 100,000 addresses to an empty set.
func BenchmarkApply100kEmpty(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns)
	ctx := b.Context()
	add := addrPolicies(100_000, 0)
	for b.Loop() {
		b.StopTimer()
		if err := f.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Current(ctx); err != nil { // recreate the empty table
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f.Apply(ctx, add, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(add)*b.N)/b.Elapsed().Seconds(), "elements/s")
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

// benchCurrent reads back a set of 100,000 addresses, as every reconcile
// pass does, with the given options.
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

// BenchmarkCurrent100k uses the default full-read schedule (one pass in
// DefaultFullReadPasses reads the sets back).
func BenchmarkCurrent100k(b *testing.B) { benchCurrent(b) }

// BenchmarkCurrent100kView answers every call from the view after the
// generation check.
func BenchmarkCurrent100kView(b *testing.B) {
	benchCurrent(b, nft.WithFullReadEvery(1<<30, 24*time.Hour))
}

// BenchmarkCurrent100kFull reads the sets back on every call.
func BenchmarkCurrent100kFull(b *testing.B) {
	benchCurrent(b, nft.WithFullReadEvery(1, 24*time.Hour))
}

// BenchmarkRefresh100k is the per-pass Refresh of 100,000 held policies,
// none extended.
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
