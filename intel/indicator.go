package intel

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// IndicatorType names what kind of observable an Indicator is.
type IndicatorType string

// The indicator types Meshward understands.
const (
	IPv4   IndicatorType = "ipv4"
	IPv6   IndicatorType = "ipv6"
	CIDR   IndicatorType = "cidr"
	Domain IndicatorType = "domain"
	URL    IndicatorType = "url"
	SHA256 IndicatorType = "sha256"
	MD5    IndicatorType = "md5"
	SHA1   IndicatorType = "sha1"
)

// hashLen is the number of hex digits of each hash type.
var hashLen = map[IndicatorType]int{MD5: 32, SHA1: 40, SHA256: 64}

// ErrInvalidIndicator is wrapped by every indicator validation error.
var ErrInvalidIndicator = errors.New("invalid indicator")

// Indicator is one observable: an address, a network, a domain, a URL or a
// file hash. Values are canonical (see NewIndicator), so two indicators are
// the same exactly when their Keys are equal.
type Indicator struct {
	Type  IndicatorType `json:"type"`
	Value string        `json:"value"`
}

// maxIndicatorLen bounds the value of any indicator.
const maxIndicatorLen = 2048

// NewIndicator validates value as an indicator of type t and returns it in
// canonical form: addresses unmapped and compressed, CIDRs masked, domains
// lower-cased without a trailing dot, hashes lower-case hex.
func NewIndicator(t IndicatorType, value string) (Indicator, error) {
	if value == "" {
		return Indicator{}, fmt.Errorf("%w: empty %s value", ErrInvalidIndicator, t)
	}
	if len(value) > maxIndicatorLen {
		return Indicator{}, fmt.Errorf("%w: %s value is %d bytes, limit %d", ErrInvalidIndicator, t, len(value), maxIndicatorLen)
	}
	switch t {
	case IPv4, IPv6:
		a, err := netip.ParseAddr(value)
		if err != nil {
			return Indicator{}, fmt.Errorf("%w: %s %q: %v", ErrInvalidIndicator, t, value, err)
		}
		a = a.Unmap()
		if a.Zone() != "" {
			return Indicator{}, fmt.Errorf("%w: %s %q: zones are not allowed", ErrInvalidIndicator, t, value)
		}
		if (t == IPv4) != a.Is4() {
			return Indicator{}, fmt.Errorf("%w: %q is not an %s address", ErrInvalidIndicator, value, t)
		}
		return Indicator{Type: t, Value: a.String()}, nil
	case CIDR:
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return Indicator{}, fmt.Errorf("%w: cidr %q: %v", ErrInvalidIndicator, value, err)
		}
		return Indicator{Type: CIDR, Value: p.Masked().String()}, nil
	case Domain:
		d := strings.TrimSuffix(strings.ToLower(value), ".")
		if err := checkDomain(d); err != nil {
			return Indicator{}, fmt.Errorf("%w: domain %q: %v", ErrInvalidIndicator, value, err)
		}
		return Indicator{Type: Domain, Value: d}, nil
	case URL:
		u, err := url.Parse(value)
		if err != nil {
			return Indicator{}, fmt.Errorf("%w: url %q: %v", ErrInvalidIndicator, value, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Indicator{}, fmt.Errorf("%w: url %q: want an absolute http or https URL", ErrInvalidIndicator, value)
		}
		return Indicator{Type: URL, Value: u.String()}, nil
	case MD5, SHA1, SHA256:
		h := strings.ToLower(value)
		if n := hashLen[t]; len(h) != n || !isHex(h) {
			return Indicator{}, fmt.Errorf("%w: %s %q: want %d hex digits", ErrInvalidIndicator, t, value, n)
		}
		return Indicator{Type: t, Value: h}, nil
	default:
		return Indicator{}, fmt.Errorf("%w: unknown type %q (want ipv4, ipv6, cidr, domain, url, md5, sha1 or sha256)", ErrInvalidIndicator, t)
	}
}

// ParseIndicator guesses the type of s: an IP address, a CIDR, a URL, an
// MD5, SHA-1 or SHA-256 hash (by its number of hex digits), or else a
// domain.
func ParseIndicator(s string) (Indicator, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.Contains(s, "://"):
		return NewIndicator(URL, s)
	case strings.Contains(s, "/"):
		return NewIndicator(CIDR, s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Unmap().Is4() {
			return NewIndicator(IPv4, s)
		}
		return NewIndicator(IPv6, s)
	}
	if isHex(strings.ToLower(s)) {
		for t, n := range hashLen {
			if len(s) == n {
				return NewIndicator(t, s)
			}
		}
	}
	return NewIndicator(Domain, s)
}

// IndicatorFromAddr returns the ipv4 or ipv6 indicator for a.
func IndicatorFromAddr(a netip.Addr) Indicator {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return Indicator{Type: IPv4, Value: a.String()}
	}
	return Indicator{Type: IPv6, Value: a.String()}
}

// Validate reports whether the indicator is well formed and canonical.
func (i Indicator) Validate() error {
	c, err := NewIndicator(i.Type, i.Value)
	if err != nil {
		return err
	}
	if c != i {
		return fmt.Errorf("%w: %s %q is not canonical (want %q)", ErrInvalidIndicator, i.Type, i.Value, c.Value)
	}
	return nil
}

// Key is the indicator's unique string form, "type:value".
func (i Indicator) Key() string { return string(i.Type) + ":" + i.Value }

// String returns the value alone, as an operator would write it.
func (i Indicator) String() string { return i.Value }

// Prefix returns the network an address or CIDR indicator covers; ok is
// false for the other types.
func (i Indicator) Prefix() (p netip.Prefix, ok bool) {
	switch i.Type {
	case IPv4, IPv6:
		a, err := netip.ParseAddr(i.Value)
		if err != nil {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	case CIDR:
		p, err := netip.ParsePrefix(i.Value)
		if err != nil {
			return netip.Prefix{}, false
		}
		return p.Masked(), true
	}
	return netip.Prefix{}, false
}

// Overlaps reports whether i and o cover at least one common address, or
// are the same non-network indicator.
func (i Indicator) Overlaps(o Indicator) bool {
	p, ok1 := i.Prefix()
	q, ok2 := o.Prefix()
	if ok1 && ok2 {
		return p.Overlaps(q)
	}
	if ok1 != ok2 {
		return false
	}
	if i.Type == Domain && o.Type == Domain {
		return i.Value == o.Value || strings.HasSuffix(i.Value, "."+o.Value) || strings.HasSuffix(o.Value, "."+i.Value)
	}
	return i == o
}

// isHex reports whether s is non-empty lower-case hex.
func isHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// IsHash reports whether t is a file hash type (md5, sha1, sha256): an
// indicator no firewall can enforce.
func IsHash(t IndicatorType) bool { _, ok := hashLen[t]; return ok }

func checkDomain(d string) error {
	if len(d) > 253 {
		return errors.New("longer than 253 bytes")
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("label %q must be 1 to 63 bytes", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("label %q has character %q", l, c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", l)
		}
	}
	return nil
}
