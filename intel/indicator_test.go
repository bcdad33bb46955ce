package intel

import (
	"errors"
	"testing"
	"time"
)

func TestNewIndicatorCanonical(t *testing.T) {
	cases := []struct {
		typ       IndicatorType
		in, want  string
		wantError bool
	}{
		{IPv4, "203.0.113.7", "203.0.113.7", false},
		{IPv4, "::ffff:203.0.113.7", "203.0.113.7", false},
		{IPv4, "2001:db8::1", "", true},
		{IPv4, "203.0.113", "", true},
		{IPv6, "2001:DB8:0:0::1", "2001:db8::1", false},
		{IPv6, "fe80::1%eth0", "", true},
		{CIDR, "10.1.2.3/8", "10.0.0.0/8", false},
		{CIDR, "10.0.0.0/33", "", true},
		{Domain, "Evil.Example.COM.", "evil.example.com", false},
		{Domain, "bad domain", "", true},
		{Domain, "-x.example", "", true},
		{URL, "https://evil.example/login", "https://evil.example/login", false},
		{URL, "ftp://x", "", true},
		{SHA256, "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false},
		{SHA256, "abc", "", true},
		{MD5, "D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427e", false},
		{MD5, "d41d8cd98f00b204e9800998ecf8427", "", true},   // 31 digits
		{MD5, "d41d8cd98f00b204e9800998ecf8427e0", "", true}, // 33 digits
		{MD5, "g41d8cd98f00b204e9800998ecf8427e", "", true},  // not hex
		{SHA1, "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "da39a3ee5e6b4b0d3255bfef95601890afd80709", false},
		{SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd8070", "", true},
		{SHA1, "d41d8cd98f00b204e9800998ecf8427e", "", true}, // an md5 is not a sha1
		{SHA256, "da39a3ee5e6b4b0d3255bfef95601890afd80709", "", true},
		{SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd8070 ", "", true},
		{"mac", "00:11", "", true},
		{IPv4, "", "", true},
	}
	for _, c := range cases {
		got, err := NewIndicator(c.typ, c.in)
		if c.wantError {
			if !errors.Is(err, ErrInvalidIndicator) {
				t.Errorf("NewIndicator(%s, %q): err %v, want ErrInvalidIndicator", c.typ, c.in, err)
			}
			continue
		}
		if err != nil || got.Value != c.want {
			t.Errorf("NewIndicator(%s, %q) = %q, %v; want %q", c.typ, c.in, got.Value, err, c.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("canonical %v fails Validate: %v", got, err)
		}
	}
	if err := (Indicator{Type: IPv6, Value: "2001:DB8::1"}).Validate(); err == nil {
		t.Error("non-canonical indicator passed Validate")
	}
}

func TestParseIndicator(t *testing.T) {
	for in, want := range map[string]IndicatorType{
		"1.2.3.4": IPv4, "2001:db8::1": IPv6, "10.0.0.0/8": CIDR, "evil.example": Domain,
		"http://evil.example/x": URL, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855": SHA256,
		"D41D8CD98F00B204E9800998ECF8427E": MD5, "da39a3ee5e6b4b0d3255bfef95601890afd80709": SHA1,
		"d41d8cd98f00b204e9800998ecf8427": Domain, // 31 hex digits: no hash
	} {
		got, err := ParseIndicator(in)
		if err != nil || got.Type != want {
			t.Errorf("ParseIndicator(%q) = %v, %v; want type %s", in, got, err, want)
		}
	}
}

// Hashes are not networks: they never overlap an address and are not
// firewall-enforceable.
func TestHashTypes(t *testing.T) {
	for _, typ := range []IndicatorType{MD5, SHA1, SHA256} {
		if !IsHash(typ) {
			t.Errorf("IsHash(%s) = false", typ)
		}
	}
	for _, typ := range []IndicatorType{IPv4, IPv6, CIDR, Domain, URL} {
		if IsHash(typ) {
			t.Errorf("IsHash(%s) = true", typ)
		}
	}
	md5, err := ParseIndicator("d41d8cd98f00b204e9800998ecf8427e")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := md5.Prefix(); ok {
		t.Error("an md5 has a prefix")
	}
	if md5.Key() != "md5:d41d8cd98f00b204e9800998ecf8427e" {
		t.Errorf("key %q", md5.Key())
	}
}

func TestOverlaps(t *testing.T) {
	mk := func(s string) Indicator {
		i, err := ParseIndicator(s)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	yes := [][2]string{{"10.0.0.0/8", "10.1.2.3"}, {"10.1.2.3", "10.1.2.3"}, {"a.example", "x.a.example"}, {"2001:db8::/32", "2001:db8::5"}}
	no := [][2]string{{"10.0.0.0/8", "11.0.0.1"}, {"10.0.0.1", "a.example"}, {"a.example", "ba.example"}, {"2001:db8::/32", "10.0.0.1"}}
	for _, p := range yes {
		if !mk(p[0]).Overlaps(mk(p[1])) || !mk(p[1]).Overlaps(mk(p[0])) {
			t.Errorf("%s and %s should overlap", p[0], p[1])
		}
	}
	for _, p := range no {
		if mk(p[0]).Overlaps(mk(p[1])) {
			t.Errorf("%s and %s should not overlap", p[0], p[1])
		}
	}
}

func TestPolicy(t *testing.T) {
	ind := Indicator{Type: IPv4, Value: "203.0.113.7"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := NewPolicy(ActionBlock, ind, "brute force", "node-a", t0, time.Hour)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.ID != NewPolicy(ActionBlock, ind, "other reason", "node-b", t0.Add(time.Minute), 0).ID {
		t.Error("same action and indicator must give the same policy ID")
	}
	if p.ID == NewPolicy(ActionAllow, ind, "", "x", t0, 0).ID {
		t.Error("block and allow of one indicator share an ID")
	}
	if !p.Active(t0.Add(59*time.Minute)) || p.Active(t0.Add(time.Hour)) {
		t.Error("Active does not follow ExpiresAt")
	}
	bad := p
	bad.ID = "x"
	if err := bad.Validate(); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("wrong ID: %v", err)
	}
	bad = p
	bad.Action = "nuke"
	if err := bad.Validate(); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("bad action: %v", err)
	}
}
