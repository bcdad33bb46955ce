package responders_test

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mustInd(t testing.TB, s string) intel.Indicator {
	t.Helper()
	ind, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return ind
}

func pol(t testing.TB, action intel.Action, s string, created time.Time, ttl time.Duration) intel.Policy {
	t.Helper()
	return intel.NewPolicy(action, mustInd(t, s), "test", "operator:test", created, ttl)
}

func blocks(created time.Time, inds ...intel.Indicator) []intel.Policy {
	var out []intel.Policy
	for _, ind := range inds {
		out = append(out, intel.NewPolicy(intel.ActionBlock, ind, "test", "operator:test", created, time.Hour))
	}
	return out
}

func TestDesired(t *testing.T) {
	block := func(s string) intel.Policy { return pol(t, intel.ActionBlock, s, t0, time.Hour) }
	allow := func(s string) intel.Policy { return pol(t, intel.ActionAllow, s, t0, time.Hour) }
	expired := func(p intel.Policy) intel.Policy { p.ExpiresAt = t0.Add(-time.Second); return p }
	tests := []struct {
		name      string
		mesh      []intel.Policy
		local     []intel.Policy
		protected []string
		want      []string
	}{
		{name: "nothing", want: nil},
		{name: "mesh and local blocks", mesh: []intel.Policy{block("203.0.113.7")}, local: []intel.Policy{block("2001:db8::7")},
			want: []string{"ipv4:203.0.113.7", "ipv6:2001:db8::7"}},
		{name: "expired block", mesh: []intel.Policy{expired(block("203.0.113.7")), block("203.0.113.8")},
			want: []string{"ipv4:203.0.113.8"}},
		{name: "expiry instant is inactive", mesh: []intel.Policy{func() intel.Policy { p := block("203.0.113.7"); p.ExpiresAt = t0; return p }()},
			want: nil},
		{name: "no expiry", mesh: []intel.Policy{pol(t, intel.ActionBlock, "203.0.113.7", t0.Add(-1000*time.Hour), 0)},
			want: []string{"ipv4:203.0.113.7"}},
		{name: "allow beats block", mesh: []intel.Policy{block("203.0.113.7"), allow("203.0.113.7"), block("203.0.113.8")},
			want: []string{"ipv4:203.0.113.8"}},
		{name: "local allow beats mesh block", mesh: []intel.Policy{block("203.0.113.7")}, local: []intel.Policy{allow("203.0.113.7")},
			want: nil},
		{name: "allow cidr covers block", mesh: []intel.Policy{block("203.0.113.7"), block("198.51.100.1")}, local: []intel.Policy{allow("203.0.113.0/24")},
			want: []string{"ipv4:198.51.100.1"}},
		{name: "allow inside blocked cidr vetoes the cidr", mesh: []intel.Policy{block("203.0.113.0/24"), allow("203.0.113.9")},
			want: nil},
		{name: "expired allow does not veto", mesh: []intel.Policy{block("203.0.113.7"), expired(allow("203.0.113.7"))},
			want: []string{"ipv4:203.0.113.7"}},
		{name: "observe is not a block", mesh: []intel.Policy{pol(t, intel.ActionObserve, "203.0.113.7", t0, time.Hour)},
			want: nil},
		{name: "protected cidr", mesh: []intel.Policy{block("10.1.2.3"), block("203.0.113.7")}, protected: []string{"10.0.0.0/8"},
			want: []string{"ipv4:203.0.113.7"}},
		{name: "protected inside blocked cidr", mesh: []intel.Policy{block("10.0.0.0/8")}, protected: []string{"10.9.9.9/32"},
			want: nil},
		{name: "protected ipv6", local: []intel.Policy{block("2001:db8::7"), block("2001:db9::1")}, protected: []string{"2001:db8::/32"},
			want: []string{"ipv6:2001:db9::1"}},
		{name: "protected does not touch domains", mesh: []intel.Policy{block("bad.example.com")}, protected: []string{"0.0.0.0/0"},
			want: []string{"domain:bad.example.com"}},
		{name: "malformed indicator skipped", mesh: []intel.Policy{block("203.0.113.8"), {Action: intel.ActionBlock, Indicator: intel.Indicator{Type: intel.IPv4, Value: "not-an-ip"}}},
			want: []string{"ipv4:203.0.113.8"}},
		{name: "non-canonical indicator skipped", mesh: []intel.Policy{{Action: intel.ActionBlock, Indicator: intel.Indicator{Type: intel.IPv6, Value: "2001:DB8::1"}}},
			want: nil},
		{name: "ipv6 allow cidr covers block", mesh: []intel.Policy{block("2001:db8::7"), allow("2001:db8::/64")},
			want: nil},
		{name: "allow parent domain vetoes subdomain", mesh: []intel.Policy{block("x.example.com")}, local: []intel.Policy{allow("example.com")},
			want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var prot []netip.Prefix
			for _, s := range tc.protected {
				prot = append(prot, netip.MustParsePrefix(s))
			}
			got := responders.Desired(t0, tc.mesh, tc.local, prot)
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tc.want) {
				t.Fatalf("Desired = %v, want %v", keys, tc.want)
			}
			for k, p := range got {
				if p.Indicator.Key() != k || p.Action != intel.ActionBlock {
					t.Errorf("entry %s holds %+v", k, p)
				}
			}
		})
	}
}

func TestDesiredKeepsLongerPolicy(t *testing.T) {
	short := pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Minute)
	long := pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)
	forever := pol(t, intel.ActionBlock, "203.0.113.7", t0, 0)
	for _, tc := range []struct {
		name        string
		mesh, local intel.Policy
		want        time.Time
	}{
		{"local outlasts mesh", short, long, long.ExpiresAt},
		{"mesh outlasts local", long, short, long.ExpiresAt},
		{"forever wins", long, forever, time.Time{}},
		{"forever mesh kept", forever, long, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := responders.Desired(t0, []intel.Policy{tc.mesh}, []intel.Policy{tc.local}, nil)
			if p := got["ipv4:203.0.113.7"]; !p.ExpiresAt.Equal(tc.want) {
				t.Fatalf("kept expiry %v, want %v", p.ExpiresAt, tc.want)
			}
		})
	}
}

func TestDesiredDoesNotModifyInputs(t *testing.T) {
	mesh := []intel.Policy{pol(t, intel.ActionBlock, "203.0.113.7", t0, time.Hour)}
	before := slices.Clone(mesh)
	responders.Desired(t0, mesh, nil, nil)
	if mesh[0].ID != before[0].ID || !mesh[0].ExpiresAt.Equal(before[0].ExpiresAt) {
		t.Fatal("Desired modified its input")
	}
}

func BenchmarkDesired(b *testing.B) {
	var mesh, local []intel.Policy
	for i := range 100000 {
		a := netip.AddrFrom4([4]byte{198, byte(16 + i>>16), byte(i >> 8), byte(i)})
		mesh = append(mesh, intel.NewPolicy(intel.ActionBlock, intel.IndicatorFromAddr(a), "", "operator:bench", t0, time.Hour))
	}
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{198, byte(16 + i>>16), byte(i >> 8), byte(i)})
		local = append(local, intel.NewPolicy(intel.ActionAllow, intel.IndicatorFromAddr(a), "", "operator:bench", t0, time.Hour))
	}
	local = append(local, pol(b, intel.ActionAllow, "198.16.200.0/24", t0, time.Hour))
	prot := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(responders.Desired(t0, mesh, local, prot)); n != 100000-1000-256 {
			b.Fatalf("%d desired", n)
		}
	}
}
