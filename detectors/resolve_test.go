package detectors

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// fakeDNS answers from a table and counts its lookups.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	block   map[string]bool // these wait for the context to end
	lookups map[string]int
}

func (f *fakeDNS) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	f.lookups[host]++
	a, ok := f.answers[host]
	block := f.block[host]
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if !ok {
		return nil, errors.New("no such host")
	}
	return a, nil
}

func pamLine(sec int, host string) string {
	return "Nov 28 12:00:" + string(rune('0'+sec/10)) + string(rune('0'+sec%10)) +
		" oldbox sshd(pam_unix)[1]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=" + host + "  user=root"
}

// TestResolveHosts checks that a sighting about a host name brings the
// sightings of its addresses, at half the confidence and never for an
// allowed address; that answers and failures are cached, lookups time
// out and are rate-limited, and everything is counted.
func TestResolveHosts(t *testing.T) {
	dns := &fakeDNS{
		answers: map[string][]netip.Addr{
			"bad.example.net": {netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("::ffff:203.0.113.9"), netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::9")},
		},
		block:   map[string]bool{"slow.example.net": true},
		lookups: map[string]int{},
	}
	clock := base.Add(time.Hour)
	rs, err := BuiltinRules().Select("pam-bruteforce")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewRulesEngine(rs, EngineOptions{
		Now:     fixedNow,
		Allow:   []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Resolve: &ResolveOptions{Lookup: dns.lookup, Timeout: 20 * time.Millisecond, MaxLookups: 2, Now: func() time.Time { return clock }},
	})
	if err != nil {
		t.Fatal(err)
	}
	feed := func(host string, from int) []intel.Sighting {
		var got []intel.Sighting
		for i := range 5 {
			e.Process([]byte(pamLine(from+i, host)), func(s intel.Sighting) {
				if err := s.Validate(); err != nil {
					t.Errorf("invalid sighting %+v: %v", s, err)
				}
				got = append(got, s)
			})
		}
		return got
	}
	got := feed("bad.example.net", 0)
	var inds []string
	for _, s := range got {
		inds = append(inds, s.Indicator.Key())
		if s.Indicator.Type != intel.Domain && s.Confidence != 37 {
			t.Errorf("%s: confidence %d, want half of 75", s.Indicator, s.Confidence)
		}
	}
	want := []string{"domain:bad.example.net", "ipv4:203.0.113.9", "ipv6:2001:db8::9"}
	if len(inds) != len(want) || inds[0] != want[0] || inds[1] != want[1] || inds[2] != want[2] {
		t.Fatalf("sightings %v, want %v (the allowed 192.0.2.7 never, the mapped duplicate once)", inds, want)
	}

	// The cooldown has passed: fired again, answered from the cache.
	clock = clock.Add(time.Minute)
	e.Process([]byte("Nov 28 12:20:00 oldbox sshd(pam_unix)[1]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=bad.example.net"), func(intel.Sighting) {})
	for i := range 5 {
		e.Process([]byte("Nov 28 12:20:0"+string(rune('1'+i))+" oldbox sshd(pam_unix)[1]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=bad.example.net"), func(intel.Sighting) {})
	}
	if n := dns.lookups["bad.example.net"]; n != 1 {
		t.Errorf("bad.example.net looked up %d times, want 1 (cached)", n)
	}

	// A lookup that hangs is cut at the timeout; one that fails is
	// cached too.
	start := time.Now()
	if got := feed("slow.example.net", 20); len(got) != 1 {
		t.Errorf("slow name: %d sightings, want the domain alone", len(got))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a hanging lookup held the engine %s", d)
	}
	feed("gone.example.net", 30)
	// The rate limit (2 lookups a minute, a new minute since the first)
	// is spent: a new name is not
	// looked up.
	feed("late.example.net", 40)
	if dns.lookups["late.example.net"] != 0 {
		t.Error("a lookup past the rate limit")
	}
	st := e.Stats()
	if st.Resolved != 4 || st.ResolveFailed != 2 || st.ResolveLimited != 1 {
		t.Errorf("stats: resolved %d, failed %d, limited %d; want 4, 2, 1", st.Resolved, st.ResolveFailed, st.ResolveLimited)
	}
}

// TestResolveCacheBounded fills the cache past its size: the oldest
// names are dropped.
func TestResolveCacheBounded(t *testing.T) {
	n := 0
	r, err := newResolver(ResolveOptions{CacheSize: 3, MaxLookups: 100, Lookup: func(context.Context, string) ([]netip.Addr, error) {
		n++
		return []netip.Addr{netip.MustParseAddr("203.0.113.1")}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a.example", "b.example", "c.example", "d.example", "a.example"} {
		r.addrs(h)
	}
	if len(r.cache) != 3 || len(r.order) != 3 || n != 5 {
		t.Errorf("cache %d names, order %d, lookups %d; want 3, 3, 5 (a.example dropped, then looked up again)", len(r.cache), len(r.order), n)
	}
	if _, err := newResolver(ResolveOptions{Timeout: -1}); err == nil {
		t.Error("a negative timeout accepted")
	}
}
