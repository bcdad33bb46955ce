package extract

import (
	"net/netip"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// ranges are the special-purpose address blocks, each with its flag; the
// first that contains an address or network is its flag, so the narrower
// blocks come first.
var ranges = func() []struct {
	p    netip.Prefix
	flag string
} {
	table := []struct{ p, flag string }{
		{"0.0.0.0/32", FlagUnspecified},
		{"::/128", FlagUnspecified},
		{"255.255.255.255/32", FlagReserved},
		{"127.0.0.0/8", FlagLoopback},
		{"::1/128", FlagLoopback},
		{"192.0.2.0/24", FlagDocumentation},
		{"198.51.100.0/24", FlagDocumentation},
		{"203.0.113.0/24", FlagDocumentation},
		{"233.252.0.0/24", FlagDocumentation},
		{"2001:db8::/32", FlagDocumentation},
		{"3fff::/20", FlagDocumentation},
		{"10.0.0.0/8", FlagPrivate},
		{"172.16.0.0/12", FlagPrivate},
		{"192.168.0.0/16", FlagPrivate},
		{"fc00::/7", FlagPrivate},
		{"169.254.0.0/16", FlagLinkLocal},
		{"fe80::/10", FlagLinkLocal},
		{"224.0.0.0/4", FlagMulticast},
		{"ff00::/8", FlagMulticast},
		{"100.64.0.0/10", FlagShared},
		{"198.18.0.0/15", FlagBenchmark},
		{"2001:2::/48", FlagBenchmark},
		{"0.0.0.0/8", FlagReserved},
		{"192.0.0.0/24", FlagReserved},
		{"240.0.0.0/4", FlagReserved},
		{"100::/64", FlagReserved},
		{"64:ff9b:1::/48", FlagReserved},
	}
	out := make([]struct {
		p    netip.Prefix
		flag string
	}, len(table))
	for i, r := range table {
		out[i].p = netip.MustParsePrefix(r.p)
		out[i].flag = r.flag
	}
	return out
}()

// addrFlag returns the flag of an address, or "".
func addrFlag(a netip.Addr) string {
	a = a.Unmap()
	for _, r := range ranges {
		if r.p.Contains(a) {
			return r.flag
		}
	}
	return ""
}

// prefixFlag returns the flag of the narrowest special block that holds
// all of p, or "".
func prefixFlag(p netip.Prefix) string {
	for _, r := range ranges {
		if r.p.Addr().Is4() == p.Addr().Is4() && r.p.Bits() <= p.Bits() && r.p.Contains(p.Addr()) {
			return r.flag
		}
	}
	return ""
}

// fileTLDs are top-level domains that are also common file extensions:
// "README.md" and "setup.py" end in a public suffix all the same.
var fileTLDs = map[string]bool{
	"app": true, "cab": true, "java": true, "md": true, "mov": true, "pl": true,
	"pm": true, "ps": true, "py": true, "rs": true, "run": true, "sh": true,
	"so": true, "zip": true,
}

// domainFlag flags the documentation names of RFC 2606 and two-label names
// that look like file names.
func domainFlag(d string) string {
	for _, doc := range []string{"example.com", "example.net", "example.org"} {
		if d == doc || strings.HasSuffix(d, "."+doc) {
			return FlagDocumentation
		}
	}
	tld := d[strings.LastIndexByte(d, '.')+1:]
	switch {
	case tld == "example" || tld == "test":
		return FlagDocumentation
	case fileTLDs[tld] && strings.Count(d, ".") == 1:
		return FlagFileName
	}
	return ""
}

// icannSuffix reports whether tld is a top-level domain of the ICANN
// section of the public suffix list. publicsuffix.PublicSuffix answers an
// unknown one ("exe") with the name itself but icann false.
func icannSuffix(tld string) bool {
	ps, icann := publicsuffix.PublicSuffix(tld)
	return icann && ps == tld
}

// publicSuffix is publicsuffix.PublicSuffix.
func publicSuffix(d string) (string, bool) { return publicsuffix.PublicSuffix(d) }
