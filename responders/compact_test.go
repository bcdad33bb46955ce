package responders

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

var tc0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func compactPolicy(t *testing.T, action intel.Action, s string, ttl time.Duration) intel.Policy {
	t.Helper()
	ind, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return intel.NewPolicy(action, ind, "test "+s, "operator:test", tc0, ttl)
}

// The policies a settle hands on are the policies taken in, field for
// field (evidence aside), whether they were held compactly or whole.
func TestPoliciesRebuiltExactly(t *testing.T) {
	zone := time.FixedZone("UTC+1", 3600)
	var ps []intel.Policy
	add := func(p intel.Policy) { ps = append(ps, p) }
	add(compactPolicy(t, intel.ActionBlock, "203.0.113.1", time.Hour))
	add(compactPolicy(t, intel.ActionBlock, "2001:db8::1", time.Hour))
	add(compactPolicy(t, intel.ActionBlock, "198.51.100.0/24", time.Hour))
	add(compactPolicy(t, intel.ActionBlock, "evil.example", time.Hour))
	add(compactPolicy(t, intel.ActionBlock, "203.0.113.2", 0)) // no expiry
	p := compactPolicy(t, intel.ActionBlock, "203.0.113.3", time.Hour)
	p.CreatedAt = time.Time{}
	add(p)
	p = compactPolicy(t, intel.ActionBlock, "203.0.113.4", time.Hour)
	p.CreatedAt, p.ExpiresAt = p.CreatedAt.In(zone), p.ExpiresAt.In(zone)
	add(p)
	p = compactPolicy(t, intel.ActionBlock, "203.0.113.5", time.Hour)
	p.ExpiresAt = time.Now().Add(time.Hour) // a monotonic reading
	add(p)
	p = compactPolicy(t, intel.ActionBlock, "203.0.113.6", time.Hour)
	p.ID = "not-hex"
	add(p)
	p = compactPolicy(t, intel.ActionBlock, "203.0.113.7", time.Hour)
	p.ID = "ABCDEF0123456789" // upper case: not the usual form
	add(p)
	p = compactPolicy(t, intel.ActionBlock, "203.0.113.8", time.Hour)
	p.ExpiresAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // beyond int64 nanoseconds
	add(p)
	p = compactPolicy(t, intel.ActionBlock, "203.0.113.9", time.Hour)
	p.Evidence = []intel.Evidence{{}}
	add(p)
	if ind := (intel.Indicator{Type: intel.IPv6, Value: "::ffff:203.0.113.10"}); ind.Validate() == nil {
		add(intel.NewPolicy(intel.ActionBlock, ind, "mapped", "operator:test", tc0, time.Hour)) // read back as IPv4 if held by its 16 bytes
	}

	s := newDesiredState(slog.New(slog.DiscardHandler))
	for _, p := range ps {
		s.put(p, false, tc0)
	}
	d := s.settle(true)
	got := map[string]intel.Policy{}
	for _, p := range d.add {
		got[p.Indicator.Key()] = p
	}
	set := DesiredSet{s: s}
	for _, want := range ps {
		want.Evidence = nil
		k := want.Indicator.Key()
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, want) {
			t.Errorf("added %s:\n got %#v\nwant %#v", k, g, want)
		}
		if g, ok := set.Get(k); !ok || !reflect.DeepEqual(*g, want) {
			t.Errorf("Get(%s) = %#v, %v", k, g, ok)
		}
	}
	n := 0
	for k, p := range set.All() {
		n++
		if k != p.Indicator.Key() {
			t.Errorf("All yields %s for %s", k, p.Indicator.Key())
		}
	}
	if n != len(ps) || set.Len() != len(ps) {
		t.Errorf("All yields %d entries, Len is %d, want %d", n, set.Len(), len(ps))
	}
	n = 0
	for e := range set.Entries() {
		n++
		p := e.Policy()
		want, ok := got[p.Indicator.Key()]
		if !ok || !reflect.DeepEqual(p, want) || e.Key() != p.Indicator.Key() || e.Type() != p.Indicator.Type || e.ExpiresAt() != p.ExpiresAt {
			t.Errorf("entry %s: type %s, expiry %v, policy %+v", e.Key(), e.Type(), e.ExpiresAt(), p)
		}
		if a, ok := e.Addr(); ok != (p.Indicator.Type == intel.IPv4 || p.Indicator.Type == intel.IPv6) || ok && intel.IndicatorFromAddr(a) != p.Indicator {
			t.Errorf("entry %s: address %v, %v", e.Key(), a, ok)
		}
	}
	if n != len(ps) {
		t.Errorf("Entries yields %d entries, want %d", n, len(ps))
	}
	// Taken in again, every policy is the same version: nothing changes.
	s.resync(false, ps, tc0)
	if d := s.settle(true); len(d.add)+len(d.remove)+len(d.refresh) != 0 {
		t.Errorf("a resync of the same policies changed %+v", d)
	}
}

// A settle of many keys does not keep its dirty list, and policies that
// go leave nothing behind: slabs are reused, maps and interned strings
// emptied.
func TestStateReleasesWhatGoes(t *testing.T) {
	const n = 5000
	s := newDesiredState(slog.New(slog.DiscardHandler))
	var ps []intel.Policy
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		p := intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), fmt.Sprintf("reason %d", i), "operator:test", tc0, time.Hour)
		ps = append(ps, p)
		s.put(p, false, tc0)
	}
	s.put(compactPolicy(t, intel.ActionBlock, "evil.example", time.Hour), true, tc0)
	if d := s.settle(true); len(d.add) != n+1 {
		t.Fatalf("added %d, want %d", len(d.add), n+1)
	}
	if cap(s.dirty) != 0 {
		t.Errorf("the dirty list keeps a capacity of %d after a settle of %d keys", cap(s.dirty), n+1)
	}
	pols, keys := s.pols.len(), s.keys.len()
	for round := range 2 {
		s.expire(tc0.Add(time.Hour))
		s.settle(true)
		if s.ids[0].Len()+s.ids[1].Len()+s.addrs.Len()+len(s.wides)+len(s.exp)+len(s.strs.idx)+s.ndesired != 0 {
			t.Fatalf("round %d: after every policy expired: %d+%d IDs, %d+%d keys, %d expiries, %d strings, %d desired",
				round, s.ids[0].Len(), s.ids[1].Len(), s.addrs.Len(), len(s.wides), len(s.exp), len(s.strs.idx), s.ndesired)
		}
		if dg := (DesiredSet{s: s}).Digest(nil); dg != (Digest{}) {
			t.Fatalf("round %d: the digest of nothing is %+v", round, dg)
		}
		for _, p := range ps {
			s.put(p, false, tc0)
		}
		s.put(compactPolicy(t, intel.ActionBlock, "evil.example", time.Hour), true, tc0)
		s.settle(true)
		if s.pols.len() != pols || s.keys.len() != keys {
			t.Fatalf("round %d: the slabs grew from %d policies and %d keys to %d and %d", round, pols, keys, s.pols.len(), s.keys.len())
		}
	}
}

// A block replaced within one settle by another of the same key is
// compared with its successor: a refresh when they differ, nothing when
// they are the same version.
func TestReplacedBlockComparedAtSettle(t *testing.T) {
	s := newDesiredState(slog.New(slog.DiscardHandler))
	p := compactPolicy(t, intel.ActionBlock, "203.0.113.1", time.Hour)
	s.put(p, false, tc0)
	s.settle(true)
	s.remove(p.ID, false)
	s.put(p, false, tc0)
	if d := s.settle(true); len(d.add)+len(d.remove)+len(d.refresh) != 0 {
		t.Fatalf("the same version put back changed %+v", d)
	}
	q := p
	q.ExpiresAt = q.ExpiresAt.Add(time.Hour)
	s.remove(p.ID, false)
	s.put(q, true, tc0)
	d := s.settle(true)
	if len(d.add)+len(d.remove) != 0 || len(d.refresh) != 1 || !reflect.DeepEqual(d.refresh[0], q) {
		t.Fatalf("an extension changed %+v, want a refresh of %+v", d, q)
	}
	if len(s.freePols) != s.pols.len()-1 {
		t.Fatalf("%d policies held in the slab, want 1", s.pols.len()-len(s.freePols))
	}
}

// An address is held by its 16 bytes only when its key can be rebuilt
// from them.
func TestAddrKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		ind intel.Indicator
		ok  bool
	}{
		{intel.Indicator{Type: intel.IPv4, Value: "203.0.113.1"}, true},
		{intel.Indicator{Type: intel.IPv6, Value: "2001:db8::1"}, true},
		{intel.Indicator{Type: intel.IPv6, Value: "::"}, true},
		{intel.Indicator{Type: intel.IPv6, Value: "::ffff:203.0.113.1"}, false}, // would read back as IPv4
		{intel.Indicator{Type: intel.IPv6, Value: "2001:DB8::1"}, false},
		{intel.Indicator{Type: intel.IPv6, Value: "2001:db8:0::1"}, false},
		{intel.Indicator{Type: intel.IPv6, Value: "fe80::1%eth0"}, false},
		{intel.Indicator{Type: intel.IPv4, Value: "2001:db8::1"}, false},
		{intel.Indicator{Type: intel.IPv6, Value: "203.0.113.1"}, false},
		{intel.Indicator{Type: intel.CIDR, Value: "203.0.113.0/24"}, false},
		{intel.Indicator{Type: intel.Domain, Value: "evil.example"}, false},
	} {
		a, ok := addrKeyOf(tc.ind)
		if ok != tc.ok {
			t.Errorf("addrKeyOf(%v) ok = %v, want %v", tc.ind, ok, tc.ok)
			continue
		}
		if ok && (a.indicator() != tc.ind || a.key() != tc.ind.Key() || a.hash() != KeyHash(tc.ind.Key())) {
			t.Errorf("%v reads back as %v, key %q, hash %x", tc.ind, a.indicator(), a.key(), a.hash())
		}
		if got := parseKey(tc.ind.Key()); got != tc.ind {
			t.Errorf("parseKey(%q) = %v", tc.ind.Key(), got)
		}
	}
}

// The dry run tells an IPv4 address from its IPv4-mapped IPv6 form, and
// its digest counts what it holds.
func TestDryRunCompactKeys(t *testing.T) {
	v4 := intel.Indicator{Type: intel.IPv4, Value: "203.0.113.1"}
	mapped := intel.Indicator{Type: intel.IPv6, Value: "::ffff:203.0.113.1"}
	dom := intel.Indicator{Type: intel.Domain, Value: "evil.example"}
	d := NewDryRun(nil)
	ctx := t.Context()
	policies := func(inds ...intel.Indicator) []intel.Policy {
		var out []intel.Policy
		for _, ind := range inds {
			out = append(out, intel.NewPolicy(intel.ActionBlock, ind, "test", "operator:test", tc0, time.Hour))
		}
		return out
	}
	if err := d.Apply(ctx, policies(v4, mapped, dom, v4), nil); err != nil {
		t.Fatal(err)
	}
	if got := d.Blocked(); !reflect.DeepEqual(got, []intel.Indicator{dom, v4, mapped}) {
		t.Fatalf("Blocked = %v", got)
	}
	var want Digest
	for _, ind := range []intel.Indicator{v4, mapped, dom} {
		want.Add(ind.Key())
	}
	if d.digest != want {
		t.Fatalf("digest %+v, want %+v", d.digest, want)
	}
	if err := d.Apply(ctx, nil, []intel.Indicator{v4, v4}); err != nil {
		t.Fatal(err)
	}
	if d.Has(v4) || !d.Has(mapped) || !d.Has(dom) {
		t.Fatalf("after removing %v: Blocked = %v", v4, d.Blocked())
	}
	want.Remove(v4.Key())
	if d.digest != want {
		t.Fatalf("digest %+v, want %+v", d.digest, want)
	}
	cur, _ := d.Current(ctx)
	if len(cur) != 2 || cur[mapped.Key()] != mapped || cur[dom.Key()] != dom {
		t.Fatalf("Current = %v", cur)
	}
	// An address blocked again takes the slot it left.
	v4b := intel.Indicator{Type: intel.IPv4, Value: "203.0.113.2"}
	if err := d.Apply(ctx, policies(v4b), nil); err != nil {
		t.Fatal(err)
	}
	if d.addrs.len() != 1 || !d.Has(v4b) || d.Has(v4) {
		t.Fatalf("after blocking %v: %d address slots, Blocked = %v", v4b, d.addrs.len(), d.Blocked())
	}
	if err := d.Apply(ctx, nil, []intel.Indicator{v4b}); err != nil {
		t.Fatal(err)
	}
	// Compared with a desired set of v4 and dom: v4 to add, mapped to
	// remove, whether or not the comparison is thorough.
	for _, thorough := range []bool{false, true} {
		add, remove, _, err := d.Compare(ctx, NewDesiredSet(policies(v4, dom), thorough))
		if err != nil || len(add) != 1 || add[0].Indicator != v4 || !reflect.DeepEqual(remove, []intel.Indicator{mapped}) {
			t.Fatalf("Compare (thorough %v) = %v, %v, %v", thorough, add, remove, err)
		}
	}
}

// Of blocks of one key that expire together, a mesh-wide one is
// enforced, then the lowest ID, whatever the form of the IDs.
func TestChooseTies(t *testing.T) {
	base := compactPolicy(t, intel.ActionBlock, "203.0.113.1", time.Hour)
	with := func(id string) intel.Policy { p := base; p.ID = id; return p }
	for _, tc := range []struct {
		name        string
		mesh, local []string
		want        string
	}{
		{"compact IDs", []string{"00000000000000bb", "00000000000000aa", "00000000000000cc"}, nil, "00000000000000aa"},
		{"other IDs", []string{"id-2", "id-1", "id-3"}, nil, "id-1"},
		{"mixed IDs", []string{"id-0", "00000000000000aa"}, nil, "00000000000000aa"},
		{"mesh before local", []string{"00000000000000bb"}, []string{"00000000000000aa"}, "00000000000000bb"},
	} {
		for _, reverse := range []bool{false, true} {
			s := newDesiredState(slog.New(slog.DiscardHandler))
			put := func(ids []string, local bool) {
				for i := range ids {
					if reverse {
						i = len(ids) - 1 - i
					}
					s.put(with(ids[i]), local, tc0)
				}
			}
			put(tc.local, true)
			put(tc.mesh, false)
			d := s.settle(true)
			if len(d.add) != 1 || d.add[0].ID != tc.want {
				t.Errorf("%s (reversed %v): added %+v, want the policy %s", tc.name, reverse, d.add, tc.want)
			}
		}
	}
}

// The zero DesiredSet is an empty one.
func TestZeroDesiredSet(t *testing.T) {
	var d DesiredSet
	_, got := d.Get("ipv4:203.0.113.1")
	n := 0
	for range d.All() {
		n++
	}
	if d.Len() != 0 || d.Has("ipv4:203.0.113.1") || got || n != 0 || d.Digest(nil) != (Digest{}) {
		t.Fatal("the zero DesiredSet is not empty")
	}
	add, remove, _, err := NewDryRun(nil).Compare(t.Context(), d)
	if len(add)+len(remove) != 0 || err != nil {
		t.Fatalf("an empty dry run compared with the zero set: %v, %v, %v", add, remove, err)
	}
}

// plainRefresher is a backend that cannot compare but refreshes.
type plainRefresher struct {
	d         *DryRun
	refreshed []intel.Policy
}

func (b *plainRefresher) Name() string { return "plain" }
func (b *plainRefresher) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	return b.d.Current(ctx)
}
func (b *plainRefresher) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	return b.d.Apply(ctx, add, remove)
}
func (b *plainRefresher) Refresh(_ context.Context, held []intel.Policy) (int, error) {
	b.refreshed = append(b.refreshed, held...)
	return 0, nil
}

// A full pass over a backend without Compare adds what it lacks and
// hands a Refresher the policies of what it holds, rebuilt whole.
func TestCurrentPathAddsAndRefreshes(t *testing.T) {
	ps := []intel.Policy{
		compactPolicy(t, intel.ActionBlock, "203.0.113.1", time.Hour),
		compactPolicy(t, intel.ActionBlock, "evil.example", time.Hour),
	}
	b := &plainRefresher{d: NewDryRun(nil)}
	r := NewReconciler(&fixedSource{mesh: ps}, []Backend{b}, Options{Now: func() time.Time { return tc0 }})
	defer r.Close()
	for range 2 {
		if err := r.ReconcileOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.d.Blocked(); len(got) != 2 {
		t.Fatalf("Blocked = %v", got)
	}
	if r.Stats().Added != 2 {
		t.Fatalf("added %d, want 2", r.Stats().Added)
	}
	got := map[string]intel.Policy{}
	for _, p := range b.refreshed {
		got[p.Indicator.Key()] = p
	}
	for _, p := range ps {
		if !reflect.DeepEqual(got[p.Indicator.Key()], p) {
			t.Errorf("refreshed %+v, want %+v", got[p.Indicator.Key()], p)
		}
	}
}

type fixedSource struct{ mesh []intel.Policy }

func (f *fixedSource) MeshPolicies(time.Time) []intel.Policy   { return f.mesh }
func (f *fixedSource) LocalDecisions(time.Time) []intel.Policy { return nil }
func (f *fixedSource) Protected() []netip.Prefix               { return nil }

// A thorough comparison that finds every desired key held skips the keys
// held only when there are no others: a dry run holding more than is
// desired, or as many but others, still reports what it holds undesired.
func TestDryRunCompareHeldNotDesired(t *testing.T) {
	ctx := t.Context()
	policies := func(inds ...intel.Indicator) []intel.Policy {
		var out []intel.Policy
		for _, ind := range inds {
			out = append(out, intel.NewPolicy(intel.ActionBlock, ind, "test", "operator:test", tc0, time.Hour))
		}
		return out
	}
	ip := func(s string) intel.Indicator { return intel.Indicator{Type: intel.IPv4, Value: s} }
	dom := func(s string) intel.Indicator { return intel.Indicator{Type: intel.Domain, Value: s} }
	a, b, c := ip("203.0.113.1"), ip("203.0.113.2"), ip("203.0.113.3")
	x, y := dom("evil.example"), dom("worse.example")
	for _, tc := range []struct {
		name          string
		held, desired []intel.Indicator
		add, remove   []intel.Indicator
	}{
		{"as desired", []intel.Indicator{a, b, x}, []intel.Indicator{a, b, x}, nil, nil},
		{"an address more", []intel.Indicator{a, b, c, x}, []intel.Indicator{a, b, x}, nil, []intel.Indicator{c}},
		{"another address", []intel.Indicator{a, c, x}, []intel.Indicator{a, b, x}, []intel.Indicator{b}, []intel.Indicator{c}},
		{"a domain more", []intel.Indicator{a, x, y}, []intel.Indicator{a, x}, nil, []intel.Indicator{y}},
		{"another domain", []intel.Indicator{a, y}, []intel.Indicator{a, x}, []intel.Indicator{x}, []intel.Indicator{y}},
	} {
		d := NewDryRun(nil)
		if err := d.Apply(ctx, policies(tc.held...), nil); err != nil {
			t.Fatal(err)
		}
		add, remove, _, err := d.Compare(ctx, NewDesiredSet(policies(tc.desired...), true))
		if err != nil {
			t.Fatal(err)
		}
		var added []intel.Indicator
		for _, p := range add {
			added = append(added, p.Indicator)
		}
		if !reflect.DeepEqual(added, tc.add) || !reflect.DeepEqual(remove, tc.remove) {
			t.Errorf("%s: Compare adds %v and removes %v, want %v and %v", tc.name, added, remove, tc.add, tc.remove)
		}
	}
}
