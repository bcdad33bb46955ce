package responders_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// discard is a backend that holds nothing and accepts everything: the
// benchmarks measure the reconciler alone.
type discard struct{ applied int }

func (*discard) Name() string { return "discard" }
func (*discard) Current(context.Context) (map[string]intel.Indicator, error) {
	return map[string]intel.Indicator{}, nil
}
func (d *discard) Apply(_ context.Context, add []intel.Policy, remove []intel.Indicator) error {
	d.applied += len(add) + len(remove)
	return nil
}

// benchDelta measures the change pass of one commit (a block added, the
// one before removed) with held policies already held: its cost must not
// grow with held.
func benchDelta(b *testing.B, held int) {
	now := time.Now()
	ps := make([]intel.Policy, held)
	for i := range held {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ps[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", now, time.Hour)
	}
	src := newFeed(ps...)
	be := &discard{}
	r := responders.NewReconciler(src, []responders.Backend{be}, responders.Options{})
	defer r.Close()
	ctx := b.Context()
	if err := r.ReconcileOnce(ctx); err != nil {
		b.Fatal(err)
	}
	pages0, whole0 := src.reads()
	var prev intel.Policy
	i := 0
	for b.Loop() {
		a := netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		p := intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", now, time.Hour)
		i++
		src.commit(p)
		if prev.ID != "" {
			src.revoke(prev)
		}
		prev = p
		if err := r.DeltaPass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if pages, whole := src.reads(); pages != pages0 || whole != whole0 {
		b.Fatalf("the change passes read the source whole: %d pages, %d whole reads", pages-pages0, whole-whole0)
	}
	b.ReportMetric(float64(held), "held")
}

// BenchmarkDeltaPass is the pass of one commit with 0, 10,000 and
// 1,000,000 policies held.
func BenchmarkDeltaPass(b *testing.B) {
	for _, n := range []int{0, 10_000, 1_000_000} {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) { benchDelta(b, n) })
	}
}

// BenchmarkFirstPass1M is a reconciler's first pass over 1,000,000
// mesh-wide blocks read in pages (a node's start), with a backend that
// holds nothing.
func BenchmarkFirstPass1M(b *testing.B) {
	now := time.Now()
	ps := make([]intel.Policy, 1_000_000)
	for i := range ps {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ps[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", now, time.Hour)
	}
	src := newFeed(ps...)
	src.MeshPage("", 1, now) // sort the IDs once
	for b.Loop() {
		r := responders.NewReconciler(src, []responders.Backend{&discard{}}, responders.Options{})
		if err := r.ReconcileOnce(b.Context()); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkDryRunCompareThorough is a thorough comparison (a compliance
// check's) of a dry run holding what it should, at 1,000,000 blocks.
func BenchmarkDryRunCompareThorough(b *testing.B) {
	now := time.Now()
	ps := make([]intel.Policy, 1_000_000)
	for i := range ps {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ps[i] = intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "bench", "operator:bench", now, time.Hour)
	}
	d := responders.NewDryRun(nil)
	if err := d.Apply(b.Context(), ps, nil); err != nil {
		b.Fatal(err)
	}
	desired := responders.NewDesiredSet(ps, true)
	for b.Loop() {
		add, remove, _, err := d.Compare(b.Context(), desired)
		if err != nil || len(add)+len(remove) != 0 {
			b.Fatalf("%d to add, %d to remove, %v", len(add), len(remove), err)
		}
	}
}
