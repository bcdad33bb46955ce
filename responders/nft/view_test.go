package nft_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/nft"
)

// kernelKeys reads the backend's table through a connection of its own
// and returns the keys of the blocks it holds.
func kernelKeys(t *testing.T, ns *netNS) map[string]bool {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	out := map[string]bool{}
	for _, name := range []string{"v4", "v6"} {
		els, err := c.GetSetElements(&nftables.Set{Table: tb, Name: name})
		if err != nil {
			t.Fatalf("read set %s: %v", name, err)
		}
		for _, e := range els {
			a, _ := netip.AddrFromSlice(e.Key)
			out[intel.IndicatorFromAddr(a).Key()] = true
		}
	}
	for _, name := range []string{"v4net", "v6net"} {
		els, err := c.GetSetElements(&nftables.Set{Table: tb, Name: name})
		if err != nil {
			t.Fatalf("read set %s: %v", name, err)
		}
		for _, e := range els {
			if !e.IntervalEnd {
				a, _ := netip.AddrFromSlice(e.Key)
				out["start:"+a.String()] = true
			}
		}
	}
	return out
}

// TestElementsDeletedByHandAreRestored deletes elements behind the
// backend's back with the table intact; the next reconcile pass restores
// them, because the deletion advanced the ruleset generation.
func TestElementsDeletedByHandAreRestored(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	src := &source{}
	v4, v6, net4 := block(t, "203.0.113.9", time.Hour), block(t, "2001:db8::9", 0), block(t, "198.51.100.0/24", time.Hour)
	src.set(v4, v6, net4)
	r := responders.NewReconciler(src, []responders.Backend{f}, responders.Options{})
	ctx := t.Context()
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{v4.Indicator.Key(): true, v6.Indicator.Key(): true, "start:198.51.100.0": true}
	if got := kernelKeys(t, ns); len(got) != 3 {
		t.Fatalf("kernel holds %v, want %v", got, want)
	}

	other, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}
	if err := other.SetDeleteElements(&nftables.Set{Table: tb, Name: "v4", KeyType: nftables.TypeIPAddr},
		[]nftables.SetElement{{Key: netip.MustParseAddr("203.0.113.9").AsSlice()}}); err != nil {
		t.Fatal(err)
	}
	other.FlushSet(&nftables.Set{Table: tb, Name: "v4net"})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := kernelKeys(t, ns); len(got) != 1 {
		t.Fatalf("after the deletion by hand the kernel holds %v", got)
	}
	drifts := f.Stats().Drifts
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kernelKeys(t, ns); len(got) != 3 || !got[v4.Indicator.Key()] || !got["start:198.51.100.0"] {
		t.Fatalf("after the reconcile the kernel holds %v, want %v", got, want)
	}
	if f.Stats().Drifts != drifts+1 {
		t.Errorf("Drifts = %d, want %d", f.Stats().Drifts, drifts+1)
	}

	// A change to another table forces a full read but changes nothing.
	other.AddTable(&nftables.Table{Name: "unrelated", Family: nftables.TableFamilyINet})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	fulls := f.Stats().FullReads
	expectKeys(t, f, v4, v6, net4)
	if f.Stats().FullReads != fulls+1 {
		t.Errorf("FullReads = %d after a foreign change, want %d", f.Stats().FullReads, fulls+1)
	}
	// Nothing changed since: the view answers.
	views := f.Stats().ViewReads
	expectKeys(t, f, v4, v6, net4)
	if f.Stats().ViewReads != views+1 || f.Stats().FullReads != fulls+1 {
		t.Errorf("ViewReads %d FullReads %d, want %d and %d", f.Stats().ViewReads, f.Stats().FullReads, views+1, fulls+1)
	}
}

// TestFullReadBound checks that Current reads the sets back in full every
// N calls and every interval, whichever comes first.
func TestFullReadBound(t *testing.T) {
	ns := newNS(t)
	var now time.Time
	clock := func() time.Time { return now }
	now = time.Now()
	f := newFirewall(t, ns, nft.WithFullReadEvery(3, time.Minute), nft.WithClock(clock))
	ctx := t.Context()
	if err := f.Apply(ctx, []intel.Policy{block(t, "203.0.113.10", 0)}, nil); err != nil {
		t.Fatal(err)
	}
	start := f.Stats().FullReads // the Apply's first read
	for range 6 {
		if _, err := f.Current(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.Stats().FullReads - start; got != 2 {
		t.Errorf("full reads in 6 calls with a full read every 3 = %d, want 2", got)
	}
	start = f.Stats().FullReads
	now = now.Add(2 * time.Minute)
	if _, err := f.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Stats().FullReads != start+1 {
		t.Errorf("no full read after the interval passed")
	}
	if _, err := nft.New(nft.WithFullReadEvery(0, time.Minute)); err == nil {
		t.Error("full read every 0 passes accepted")
	}
	if _, err := nft.New(nft.WithFullReadEvery(1, 0)); err == nil {
		t.Error("full read interval 0 accepted")
	}
}

// TestExtendedExpiryReachesKernel adds blocks that expire in a few
// seconds, extends them to an hour (through Apply and through Refresh)
// and checks, once the kernel has expired a canary added with them and
// never extended, that the kernel still holds them.
func TestExtendedExpiryReachesKernel(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	// Long enough for the extensions below to land before it ends, even
	// on a loaded machine; the test waits for it once.
	const ttl = 5 * time.Second
	short := []intel.Policy{
		block(t, "203.0.113.20", ttl), block(t, "203.0.113.21", ttl),
		block(t, "2001:db8::20", ttl), block(t, "198.51.100.0/24", ttl),
		block(t, "10.0.0.0/8", ttl), block(t, "10.1.0.0/16", ttl), // nested
	}
	canary := block(t, "203.0.113.29", ttl)
	if err := f.Apply(ctx, append(slices.Clone(short), canary), nil); err != nil {
		t.Fatal(err)
	}
	long := func(ps ...intel.Policy) []intel.Policy {
		var out []intel.Policy
		for _, p := range ps {
			out = append(out, block(t, p.Indicator.String(), time.Hour))
		}
		return out
	}
	// Through Apply, as a reconciler that passes changed policies would.
	if err := f.Apply(ctx, long(short[0]), nil); err != nil {
		t.Fatal(err)
	}
	// Through Refresh, as a reconciler that only adds missing ones must.
	n, err := f.Refresh(ctx, long(short[1:]...))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 { // two addresses, two interval elements; the nested one is in memory
		t.Errorf("Refresh replaced %d elements, want 4", n)
	}
	if n, err := f.Refresh(ctx, long(short...)); err != nil || n != 0 {
		t.Errorf("second Refresh = %d, %v; want 0, nil", n, err)
	}
	if f.Stats().Refreshed != 5 {
		t.Errorf("Refreshed = %d, want 5", f.Stats().Refreshed)
	}
	// The canary leaving the kernel shows the original expiry has passed.
	deadline := time.Now().Add(30 * time.Second)
	for kernelKeys(t, ns)[canary.Indicator.Key()] {
		if time.Now().After(deadline) {
			t.Fatalf("the canary %s never expired", canary.Indicator)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The view prunes by its own record of each expiry, which the
	// kernel's timer can beat by a few milliseconds: wait until the view
	// has dropped the canary too.
	for {
		cur, err := f.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cur[canary.Indicator.Key()]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canary %s left the kernel but never the view", canary.Indicator)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := kernelKeys(t, ns)
	for _, k := range []string{short[0].Indicator.Key(), short[1].Indicator.Key(), short[2].Indicator.Key(), "start:198.51.100.0", "start:10.0.0.0"} {
		if !got[k] {
			t.Fatalf("%s left the kernel at its old expiry: %v", k, got)
		}
	}
	expectKeys(t, f, short...)
	entries, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Nested && e.Expires < 50*time.Minute {
			t.Errorf("%s: life left %v, want about an hour", e.Indicator, e.Expires)
		}
	}
}
