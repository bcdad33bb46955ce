package stix_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/stix"
)

func TestParsePattern(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want string }{
		{"[ipv4-addr:value = '198.51.100.1']", "ipv4:198.51.100.1"},
		{"[ipv4-addr:value = '198.51.100.0/24']", "cidr:198.51.100.0/24"},
		{"[ipv4-addr:value = '198.51.100.9/32']", "ipv4:198.51.100.9"},
		{"[ipv6-addr:value = '2001:DB8::1']", "ipv6:2001:db8::1"},
		{"[domain-name:value = 'Evil.Example.com.']", "domain:evil.example.com"},
		{`[url:value = 'https://x.example/it\'s\\here']`, `url:https://x.example/it%27s%5Chere`},
		{"[file:hashes.'SHA-256' = '" + strings.ToUpper(h) + "']", "sha256:" + h},
		{"[file:hashes.SHA256 = '" + h + "']", "sha256:" + h},
		{"[file:hashes.'sha256' = '" + h + "']", "sha256:" + h},
		{"[ipv4-addr:value = '10.0.0.1' OR domain-name:value = 'a.example'] OR [url:value = 'http://b.example/']",
			"ipv4:10.0.0.1 domain:a.example url:http://b.example/"},
		{"([ipv4-addr:value = '10.0.0.1'] or ([ipv4-addr:value = '10.0.0.2']))", "ipv4:10.0.0.1 ipv4:10.0.0.2"},
		{"[(ipv4-addr:value = '10.0.0.1' OR ipv4-addr:value = '10.0.0.1')]", "ipv4:10.0.0.1"},
		{"  [ ipv4-addr : value='10.0.0.1' ]  ", "ipv4:10.0.0.1"},
	} {
		got, err := stix.ParsePattern(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		var keys []string
		for _, i := range got {
			keys = append(keys, i.Key())
		}
		if strings.Join(keys, " ") != tc.want {
			t.Errorf("%s: got %v, want %s", tc.in, keys, tc.want)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, tc := range []struct {
		in          string
		pos         int
		unsupported bool
		says        string
	}{
		{"", 0, false, "empty"},
		{"[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']", 29, true, "AND"},
		{"[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '1.2.3.5']", 30, true, "AND"},
		{"[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '1.2.3.5']", 30, true, "FOLLOWEDBY"},
		{"[ipv4-addr:value = '1.2.3.4'] WITHIN 5 SECONDS", 30, true, "WITHIN"},
		{"[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES", 30, true, "REPEATS"},
		{"[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'", 30, true, "START"},
		{"[domain-name:value MATCHES '^evil']", 19, true, "MATCHES"},
		{"[domain-name:value LIKE 'evil%']", 19, true, "LIKE"},
		{"[ipv4-addr:value != '1.2.3.4']", 17, true, "!="},
		{"[ipv4-addr:value IN ('1.2.3.4')]", 17, true, "IN"},
		{"[NOT ipv4-addr:value = '1.2.3.4']", 1, true, "NOT"},
		{"[process:name = 'evil.exe']", 1, true, "process"},
		{"[file:name = 'evil.exe']", 1, true, "file:name"},
		{"[file:hashes.SSDEEP = 'x']", 1, true, "SSDEEP"},
		{"[network-traffic:dst_ref.value = '1.2.3.4']", 1, true, "network-traffic"},
		{"[ipv4-addr:value = 5]", 19, true, "non-string"},
		{"[file:hashes.MD5 = h'ab']", 19, true, "h'...'"},
		{"[ipv4-addr:value = '1.2.3.4'", 28, false, "']'"},
		{"[ipv4-addr:value = '1.2.3.4", 19, false, "unterminated"},
		{`[url:value = 'a\n']`, 15, false, "bad escape"},
		{"[ipv4-addr:value = '1.2.3.999']", 19, false, "1.2.3.999"},
		{"[ipv4-addr:value = '2001:db8::1']", 19, false, "not an ipv4"},
		{"[ipv6-addr:value = '10.0.0.0/8']", 19, false, "not an ipv6-addr"},
		{"ipv4-addr:value = '1.2.3.4'", 0, false, "'[' or '('"},
		{"[ipv4-addr:value = '1.2.3.4'] [ipv4-addr:value = '1.2.3.4']", 30, false, "end of pattern"},
		{"[ipv4-addr:value = '1.2.3.4'] OR", 32, false, "end of pattern"},
		{"[ipv4-addr:value = '1.2.3.4'] OR ", 33, false, "end of pattern"},
	} {
		_, err := stix.ParsePattern(tc.in)
		var pe *stix.PatternError
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %v is not a *PatternError", tc.in, err)
			continue
		}
		if pe.Pos != tc.pos || pe.Unsupported != tc.unsupported || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: %v (pos %d unsupported %v), want pos %d unsupported %v saying %q", tc.in, err, pe.Pos, pe.Unsupported, tc.pos, tc.unsupported, tc.says)
		}
		if !errors.Is(err, stix.ErrPattern) || errors.Is(err, stix.ErrUnsupported) != tc.unsupported {
			t.Errorf("%q: %v does not wrap the right sentinels", tc.in, err)
		}
	}
	if _, err := stix.ParsePattern("[" + strings.Repeat(" ", stix.MaxPattern) + "]"); err == nil {
		t.Error("an over-long pattern was accepted")
	}
}

// FuzzParsePattern: no input panics; whatever parses gives valid
// indicators whose own patterns parse back to them.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{
		"[ipv4-addr:value = '198.51.100.1']", "[file:hashes.'SHA-256' = '" + strings.Repeat("ab", 32) + "']",
		`[url:value = 'http://a.example/\'\\'] OR [domain-name:value = 'a.example']`,
		"([ipv6-addr:value = '2001:db8::/32'] OR [ipv4-addr:value = '10.0.0.0/8'])",
		"[ipv4-addr:value = '1.2.3.4'] WITHIN 5 SECONDS", "[a:b.'c'.d = 'x' AND e:f = 1]", "[", "'", `\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inds, err := stix.ParsePattern(s)
		if err != nil {
			var pe *stix.PatternError
			if !errors.As(err, &pe) || pe.Pos < 0 || pe.Pos > len(s) && pe.Pos != stix.MaxPattern {
				t.Fatalf("%q: error %v has no position in the pattern", s, err)
			}
			return
		}
		if len(inds) == 0 {
			t.Fatalf("%q: parsed to nothing", s)
		}
		for _, i := range inds {
			if err := i.Validate(); err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			p, err := stix.FormatPattern(i)
			if err != nil {
				t.Fatal(err)
			}
			back, err := stix.ParsePattern(p)
			if err != nil || len(back) != 1 || back[0] != i {
				t.Fatalf("%v: pattern %q parses back as %v, %v", i, p, back, err)
			}
		}
	})
}

func TestFormatPattern(t *testing.T) {
	if _, err := stix.FormatPattern(intel.Indicator{Type: "nope", Value: "x"}); err == nil {
		t.Error("an unknown type got a pattern")
	}
}
