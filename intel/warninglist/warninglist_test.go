package warninglist

import (
	"fmt"
	"testing"

	"github.com/meshward/meshward/intel"
)

func ind(t testing.TB, s string) intel.Indicator {
	t.Helper()
	i, err := intel.ParseIndicator(s)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestBuiltinMatches(t *testing.T) {
	l := Builtin()
	for _, c := range []struct{ value, entry, list string }{
		{"8.8.8.8", "8.8.8.8", "public-resolvers"},
		{"2001:4860:4860::8888", "2001:4860:4860::8888", "public-resolvers"},
		{"8.8.8.0/24", "8.8.8.8", "public-resolvers"},     // a range containing an entry
		{"1.0.0.0/8", "1.0.0.1", "public-resolvers"},      // the first entry inside in address order
		{"104.18.3.4", "104.16.0.0/13", "cdn-cloudflare"}, // an address inside an entry range
		{"104.20.0.0/16", "104.16.0.0/13", "cdn-cloudflare"},
		{"169.254.169.254", "169.254.169.254", "cloud-metadata"},
		{"fd00:ec2::254", "fd00:ec2::254", "cloud-metadata"},
		{"google.com", "google.com", "top-domains"},
		{"mail.google.com", "google.com", "top-domains"},
		{"a.b.example.org", "example.org", "reserved-names"},
		{"www.example.com", "example.com", "reserved-names"},
		{"foo.onion", "onion", "reserved-names"},
		{"localhost", "localhost", "reserved-names"},
		{"https://docs.github.com/x", "github.com", "top-domains"},
	} {
		e, ok := l.Match(ind(t, c.value))
		if !ok {
			t.Errorf("%s: no match, want %s", c.value, c.entry)
			continue
		}
		if e.Indicator.Value != c.entry || e.List != c.list {
			t.Errorf("%s: matched %s, want %s (%s)", c.value, e, c.entry, c.list)
		}
	}
	for _, v := range []string{"8.8.8.9", "203.0.113.7", "2001:db8::1", "evil-site.net", "google.com.evil.net", "notgoogle.com",
		"104.15.255.255", "104.32.0.0", "198.51.100.0/24",
		"0000000000000000000000000000000000000000000000000000000000000000"} {
		if e, ok := l.Match(ind(t, v)); ok {
			t.Errorf("%s: matched %s, want no match", v, e)
		}
	}
}

// A parent of an entry domain is vetoed: its block would cover the entry.
func TestParentOfEntryMatches(t *testing.T) {
	l, err := New([]Entry{{Indicator: ind(t, "cdn.partner.net"), List: OperatorList}})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := l.Match(ind(t, "partner.net")); !ok || e.Indicator.Value != "cdn.partner.net" {
		t.Fatalf("partner.net: %v %v, want the entry cdn.partner.net", e, ok)
	}
	if _, ok := l.Match(ind(t, "other.net")); ok {
		t.Fatal("other.net matched")
	}
}

func TestNewRefusesBadEntries(t *testing.T) {
	if _, err := New([]Entry{{Indicator: intel.Indicator{Type: intel.IPv4, Value: "8.8.8.08"}}}); err == nil {
		t.Fatal("a non-canonical address was accepted")
	}
	if _, err := New([]Entry{{Indicator: ind(t, "https://x.example/")}}); err == nil {
		t.Fatal("a URL entry was accepted")
	}
	l, err := New([]Entry{{Indicator: ind(t, "203.0.113.0/24")}, {Indicator: ind(t, "203.0.113.0/24")}})
	if err != nil || l.Len() != 1 {
		t.Fatalf("a repeated entry: %v, %d entries, want 1", err, l.Len())
	}
}

// Matching against many ranges is found by look-up, not by a walk:
// checked against a brute force over random values.
func TestMatchAgreesWithBruteForce(t *testing.T) {
	var es []Entry
	for i := range 500 {
		es = append(es, Entry{Indicator: ind(t, fmt.Sprintf("10.%d.%d.0/%d", i%200, (i*7)%256, 16+i%17)), List: "x"})
	}
	l, err := New(es)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		v := fmt.Sprintf("10.%d.%d.%d", (i*13)%256, (i*31)%256, i%256)
		if i%5 == 0 {
			v += fmt.Sprintf("/%d", 8+i%24)
		}
		q := ind(t, v)
		qp, _ := q.Prefix()
		want := false
		for _, e := range l.Entries() {
			p, _ := e.Indicator.Prefix()
			if p.Overlaps(qp) {
				want = true
				break
			}
		}
		if _, got := l.Match(q); got != want {
			t.Fatalf("%s: match %v, brute force %v", v, got, want)
		}
	}
}

func BenchmarkMatchBuiltin(b *testing.B) {
	l := Builtin()
	vals := []intel.Indicator{ind(b, "203.0.113.7"), ind(b, "8.8.8.8"), ind(b, "a.b.c.evil-site.net"), ind(b, "mail.google.com")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Match(vals[i%len(vals)])
	}
}
