package nft_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/backendtest"
	"github.com/meshward/meshward/responders/nft"
)

func newFirewall(t testing.TB, ns *netNS, opts ...nft.Option) *nft.Firewall {
	t.Helper()
	f, err := nft.New(append([]nft.Option{nft.WithNetNS(ns.fd)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func ind(t testing.TB, s string) intel.Indicator {
	t.Helper()
	i, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func block(t testing.TB, s string, ttl time.Duration) intel.Policy {
	return intel.NewPolicy(intel.ActionBlock, ind(t, s), "test", "operator:test", time.Now(), ttl)
}

// source is a StateSource whose mesh policies the test sets.
type source struct {
	mu       sync.Mutex
	policies []intel.Policy
}

func (s *source) set(p ...intel.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = p
}

func (s *source) MeshPolicies(time.Time) []intel.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intel.Policy(nil), s.policies...)
}
func (s *source) LocalDecisions(time.Time) []intel.Policy { return nil }
func (s *source) Protected() []netip.Prefix               { return nil }

func TestConformance(t *testing.T) {
	ns := newNS(t)
	backendtest.Run(t, newFirewall(t, ns))
}

func TestOptions(t *testing.T) {
	if _, err := nft.New(nft.WithTable("a"), nft.WithTable("b")); err == nil {
		t.Error("duplicate WithTable accepted")
	}
	if _, err := nft.New(nft.WithBatchSize(0)); err == nil {
		t.Error("batch size 0 accepted")
	}
	if _, err := nft.New(nft.WithTable("")); err == nil {
		t.Error("empty table name accepted")
	}
}

// TestBlocksTraffic connects from namespace A to a listener in B, blocks
// A's address (or network) in B through the reconciler, and unblocks it.
func TestBlocksTraffic(t *testing.T) {
	p := newPair(t)
	for _, c := range []struct {
		name, blocked, listen string
	}{
		{"ipv4", p.a4, p.b4},
		{"ipv6", p.a6, p.b6},
		{"cidr-v4", "10.77.0.0/24", p.b4},
		{"cidr-v6", "fd00:77::/64", p.b6},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFirewall(t, p.b, nft.WithTable("mw-"+c.name))
			t.Cleanup(func() { f.Teardown(context.Background()) })
			src := &source{}
			r := responders.NewReconciler(src, []responders.Backend{f}, responders.Options{})
			addr := listen(t, p.b, c.listen)
			ctx := t.Context()

			// The first IPv6 connection may wait for neighbour discovery.
			waitDial(t, p.a, addr)
			src.set(block(t, c.blocked, time.Hour))
			if err := r.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if err := dial(p.a, addr); err == nil {
				t.Fatalf("connection from %s succeeded while %s is blocked", p.a.name, c.blocked)
			}
			src.set()
			if err := r.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			waitDial(t, p.a, addr) // after unblocking
			cnt, err := f.Counters(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var dropped uint64
			for _, rc := range cnt {
				dropped += rc.Packets
			}
			if dropped == 0 {
				t.Errorf("no drop counted: %+v", cnt)
			}
		})
	}
}

func TestDeletedTableIsRestored(t *testing.T) {
	p := newPair(t)
	f := newFirewall(t, p.b)
	src := &source{}
	src.set(block(t, p.a4, time.Hour), block(t, "fd00:77::/64", 0))
	r := responders.NewReconciler(src, []responders.Backend{f}, responders.Options{})
	ctx := t.Context()
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	addr := listen(t, p.b, p.b4)
	if dial(p.a, addr) == nil {
		t.Fatal("connection succeeded while blocked")
	}

	// Someone deletes the table.
	other, err := nftables.New(nftables.WithNetNSFd(p.b.fd))
	if err != nil {
		t.Fatal(err)
	}
	other.DelTable(&nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	waitDial(t, p.a, addr) // open while the table is gone
	if err := r.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if dial(p.a, addr) == nil {
		t.Fatal("connection succeeded after the reconcile that should restore the table")
	}
	cur, err := f.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 2 {
		t.Fatalf("Current = %v, want the two blocks", cur)
	}
	if f.Stats().Repairs < 2 {
		t.Errorf("Repairs = %d, want at least 2 (create, restore)", f.Stats().Repairs)
	}
}

func TestTeardownLeavesOtherTables(t *testing.T) {
	ns := newNS(t)
	other, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	foreign := []*nftables.Table{
		{Name: "filter", Family: nftables.TableFamilyINet},
		{Name: nft.DefaultTable, Family: nftables.TableFamilyIPv4}, // same name, other family
	}
	for _, tb := range foreign {
		other.AddTable(tb)
		other.AddChain(&nftables.Chain{Name: "input", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	f := newFirewall(t, ns)
	ctx := t.Context()
	if err := f.Apply(ctx, []intel.Policy{block(t, "203.0.113.1", time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Teardown(ctx); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	tables, err := other.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, tb := range tables {
		got[tb.Name+"/"+familyName(tb.Family)] = true
	}
	want := map[string]bool{"filter/inet": true, "meshward/ip": true}
	if len(got) != len(want) || !got["filter/inet"] || !got["meshward/ip"] {
		t.Fatalf("tables after Teardown = %v, want %v", got, want)
	}
	if _, err := f.List(ctx); !errors.Is(err, nft.ErrNoTable) {
		t.Fatalf("List after Teardown: %v, want ErrNoTable", err)
	}
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	}
	return "other"
}

func TestNestedNetworks(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	wide, narrow, apart := block(t, "10.0.0.0/8", time.Hour), block(t, "10.1.0.0/16", 2*time.Hour), block(t, "192.0.2.0/24", 0)
	v6wide, v6narrow := block(t, "fd00::/8", 0), block(t, "fd00:1::/32", 0)
	if err := f.Apply(ctx, []intel.Policy{narrow, apart, v6narrow}, nil); err != nil {
		t.Fatal(err)
	}
	// A wider network replaces the narrower element in the kernel.
	if err := f.Apply(ctx, []intel.Policy{wide, v6wide}, nil); err != nil {
		t.Fatal(err)
	}
	expectKeys(t, f, wide, narrow, apart, v6wide, v6narrow)
	entries, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nested := 0
	for _, e := range entries {
		if e.Nested {
			nested++
		}
	}
	if nested != 2 {
		t.Errorf("List = %+v, want two nested entries", entries)
	}
	// Removing the wider one puts the narrower one back in the kernel.
	if err := f.Apply(ctx, nil, []intel.Indicator{wide.Indicator, v6wide.Indicator}); err != nil {
		t.Fatal(err)
	}
	expectKeys(t, f, narrow, apart, v6narrow)
	entries, err = f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Nested {
			t.Errorf("entry %v still nested after the wider network went", e.Indicator)
		}
	}
}

func TestTimeouts(t *testing.T) {
	ns := newNS(t)
	f := newFirewall(t, ns)
	ctx := t.Context()
	expiring := []intel.Policy{block(t, "203.0.113.5", time.Hour), block(t, "2001:db8::5", time.Hour), block(t, "198.51.100.0/24", time.Hour)}
	forever := []intel.Policy{block(t, "203.0.113.6", 0), block(t, "2001:db8::/48", 0)}
	expired := intel.NewPolicy(intel.ActionBlock, ind(t, "203.0.113.7"), "old", "operator:test", time.Now().Add(-2*time.Hour), time.Hour)
	if err := f.Apply(ctx, append(append(expiring, forever...), expired), nil); err != nil {
		t.Fatal(err)
	}
	entries, err := f.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]time.Duration{}
	for _, e := range entries {
		left[e.Indicator.Key()] = e.Expires
	}
	for _, p := range expiring {
		if d, ok := left[p.Indicator.Key()]; !ok || d <= 0 || d > time.Hour {
			t.Errorf("%s: life left %v, want in (0, 1h]", p.Indicator, d)
		}
	}
	for _, p := range forever {
		if d, ok := left[p.Indicator.Key()]; !ok || d != 0 {
			t.Errorf("%s: present %v, life left %v, want no timeout", p.Indicator, ok, d)
		}
	}
	if _, ok := left[expired.Indicator.Key()]; ok {
		t.Errorf("an expired policy was added")
	}
	if f.Stats().SkippedExpiry != 1 {
		t.Errorf("SkippedExpiry = %d, want 1", f.Stats().SkippedExpiry)
	}
}

func expectKeys(t *testing.T, f *nft.Firewall, want ...intel.Policy) {
	t.Helper()
	cur, err := f.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != len(want) {
		t.Fatalf("Current = %v, want %d entries", cur, len(want))
	}
	for _, p := range want {
		if _, ok := cur[p.Indicator.Key()]; !ok {
			t.Fatalf("Current = %v, missing %v", cur, p.Indicator)
		}
	}
}
