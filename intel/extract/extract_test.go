package extract

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// TestGolden extracts each advisory of testdata/ and compares the JSON
// lines with its .golden file, whose every line was checked by hand
// against the advisory.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/advisory-*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(in), func(t *testing.T) {
			text, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			enc := json.NewEncoder(&got)
			for _, f := range All(text) {
				if err := enc.Encode(f); err != nil {
					t.Fatal(err)
				}
			}
			golden := in + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it, then check it by hand)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s: findings differ from %s\n--- got\n%s--- want\n%s", in, golden, got.String(), want)
			}
		})
	}
	if n < 3 {
		t.Fatalf("found %d advisories in testdata/, want at least 3", n)
	}
}

// short renders findings as "type value" or "type value flag", one a line.
func short(fs []Finding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		s := string(f.Type) + " " + f.Value
		if f.Flag != "" {
			s += " " + f.Flag
		}
		out = append(out, s)
	}
	return out
}

func TestCases(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		// Refanging.
		{"hxxp and [.]", "hxxp://evil[.]com/a", []string{"url http://evil.com/a"}},
		{"hXXps and (.)", "go to hXXps://evil(.)com:8443/x now", []string{"url https://evil.com:8443/x"}},
		{"[:] and [://]", "hxxp[://]evil[.]org/p and hxxps[:]//bad{.}net/q", []string{"url http://evil.org/p", "url https://bad.net/q"}},
		{"[dot] and [at]", "write to bob [at] evil [dot] com", []string{"email bob@evil.com"}},
		{"[@]", "alice[@]mail.evil.co.uk", []string{"email alice@mail.evil.co.uk"}},
		{"defanged address", "1.2.3[.]4 and 5[.]6[.]7[.]8", []string{"ipv4 1.2.3.4", "ipv4 5.6.7.8"}},
		// HTML entities, in text and in attributes.
		{"entities", `<a href="http://evil.com/?a=1&amp;b=2">evil&#46;net</a>`, []string{"url http://evil.com/?a=1&b=2", "domain evil.net"}},
		{"entity hex dot", "bad&#x2e;example&#x2E;org", []string{"domain bad.example.org documentation"}},
		// URL ends.
		{"url prose dot", "see http://evil.com/a.", []string{"url http://evil.com/a"}},
		{"url prose marks", "http://evil.com/a?! http://evil.com/b; http://evil.com/c:", []string{"url http://evil.com/a", "url http://evil.com/b", "url http://evil.com/c"}},
		{"url comma", "http://evil.com/a,b", []string{"url http://evil.com/a"}},
		{"url prose before cut", "http://evil.com/a.,b 'http://evil.com/c!'x", []string{"url http://evil.com/a", "url http://evil.com/c"}},
		{"url quotes", `'http://evil.com/a'"http://evil.com/b"` + "`http://evil.com/c`", []string{"url http://evil.com/a", "url http://evil.com/b", "url http://evil.com/c"}},
		{"url angle", "<http://evil.com/a>", []string{"url http://evil.com/a"}},
		{"url unbalanced paren", "(http://evil.com/a)", []string{"url http://evil.com/a"}},
		{"url balanced paren", "http://evil.com/a_(b)", []string{"url http://evil.com/a_(b)"}},
		{"url empty fragment", "http://evil.com/a!# and hxxp://evil.com?@#", []string{"url http://evil.com/a", "url http://evil.com"}},
		{"url upper scheme and host", "HTTP://EVIL.COM/Path", []string{"url http://evil.com/Path"}},
		{"url ipv6 host", "http://[2001:DB8:0::1]:80/x", []string{"url http://[2001:db8::1]:80/x documentation"}},
		{"not http", "ftp://files.evil.com/x", []string{"domain files.evil.com"}},
		// A hash inside a URL is a hash too; the host is not reported
		// apart.
		{"hash in url", "http://evil.com/d41d8cd98f00b204e9800998ecf8427e/x", []string{"url http://evil.com/d41d8cd98f00b204e9800998ecf8427e/x", "md5 d41d8cd98f00b204e9800998ecf8427e"}},
		// IPv4.
		{"ipv4 plain", "from 8.8.8.8:53.", []string{"ipv4 8.8.8.8"}},
		{"ipv4 range", "10.0.0.1-10.0.0.9", []string{"ipv4 10.0.0.1 private", "ipv4 10.0.0.9 private"}},
		{"version v1.2.3.4", "v1.2.3.4 V10.1.1.1", nil},
		{"oid", "1.3.6.1.4.1.311.21.8", nil},
		{"five parts", "1.2.3.4.5", nil},
		{"dotted prefix", "9.1.2.3.4", nil},
		{"octet too big", "1.2.3.256", nil},
		{"leading zeros", "01.02.03.04", nil},
		{"ip in hostname", "1.2.3.4.nip.io", []string{"domain 1.2.3.4.nip.io"}},
		{"word glued", "abc1.2.3.4 1.2.3.4abc", nil},
		{"flags", "127.0.0.1 0.0.0.0 169.254.1.1 224.0.0.5 100.64.1.1 198.18.0.1 240.0.0.1 192.0.2.9 198.51.100.9",
			[]string{"ipv4 127.0.0.1 loopback", "ipv4 0.0.0.0 unspecified", "ipv4 169.254.1.1 link-local", "ipv4 224.0.0.5 multicast",
				"ipv4 100.64.1.1 shared", "ipv4 198.18.0.1 benchmark", "ipv4 240.0.0.1 reserved", "ipv4 192.0.2.9 documentation", "ipv4 198.51.100.9 documentation"}},
		// CIDR.
		{"cidr masked", "1.2.3.4/24 and 2001:db8::1/48", []string{"cidr 1.2.3.0/24", "cidr 2001:db8::/48 documentation"}},
		{"cidr bad length", "1.2.3.4/33", []string{"ipv4 1.2.3.4"}},
		// IPv6.
		{"ipv6 rfc5952", "2001:0DB8:0000:0000:0000:0000:0000:0001", []string{"ipv6 2001:db8::1 documentation"}},
		{"ipv6 after label", "src:2606:4700::1111, dst:fe80::1%eth0", []string{"ipv6 2606:4700::1111", "ipv6 fe80::1 link-local"}},
		{"ipv6 loopback", "::1", []string{"ipv6 ::1 loopback"}},
		{"ipv4 mapped", "::ffff:8.8.4.4", []string{"ipv4 8.8.4.4"}},
		{"not ipv6", "std::vector Foo::Bar 12:30:45 aa:bb:cc:dd:ee:ff", nil},
		{"unspecified", "0:: and ::.", []string{"ipv6 :: unspecified"}},
		// Domains.
		{"file names", "payload.exe config.php settings.ini report.docx main.go", nil},
		{"file-like tld", "README.md setup.py", []string{"domain readme.md file-name-like", "domain setup.py file-name-like"}},
		{"unknown tld", "server.internal host.lan", nil},
		{"public suffix alone", "co.uk github.io", []string{"domain github.io"}},
		{"private suffix", "evil.github.io x.blogspot.com", []string{"domain evil.github.io", "domain x.blogspot.com"}},
		{"domain case and dot", "Visit EVIL.Example.COM.", []string{"domain evil.example.com documentation"}},
		{"domain underscore", "__init__.py _dmarc.evil.com __x__.com a_b.com", nil},
		{"markdown emphasis", "_evil.com_ __1.2.3.4__ *evil.net*", []string{"domain evil.com", "ipv4 1.2.3.4", "domain evil.net"}},
		{"domain hyphens", "--evil-site.com-", []string{"domain evil-site.com"}},
		{"unicode glued", "évil.com", nil},
		{"rfc2606", "evil.example c2.test", []string{"domain evil.example documentation", "domain c2.test documentation"}},
		// E-mail.
		{"email", "Mail <Ops.Team+x@Evil.COM>.", []string{"email Ops.Team+x@evil.com"}},
		{"email bad domain", "user@host user@payload.exe @handle", nil},
		// Hashes.
		{"hashes", "44D88612FEA8A8F36DE82E1278ABB02F 3395856ce81f2b7382dee72602f798b642f14140 275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
			[]string{"md5 44d88612fea8a8f36de82e1278abb02f", "sha1 3395856ce81f2b7382dee72602f798b642f14140", "sha256 275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"}},
		{"hex too long", strings.Repeat("ab", 17) + " " + strings.Repeat("c", 65) + " " + strings.Repeat("0f", 64), nil},
		{"hex glued", "0x44d88612fea8a8f36de82e1278abb02f g44d88612fea8a8f36de82e1278abb02f", nil},
		{"all digits", "12345678901234567890123456789012", nil},
		{"hash then ext", "44d88612fea8a8f36de82e1278abb02f.exe", []string{"md5 44d88612fea8a8f36de82e1278abb02f"}},
		// CVE.
		{"cve", "cve-2014-0160, CVE-2021-44228 and CVE‑2023‑1234567", []string{"cve CVE-2014-0160", "cve CVE-2021-44228", "cve CVE-2023-1234567"}},
		{"not cve", "CVE-2024-123 CVE-24-1234 CVE-1998-1234 XCVE-2024-1234 CVE-2024-1234a", nil},
		// ATT&CK.
		{"technique", "T1059.001, T1110 and t1566.002.", []string{"attack_technique T1059.001", "attack_technique T1110", "attack_technique T1566.002"}},
		{"not technique", "T105 T10590 T1059.01 T1059.0011 T1059.001.2 XT1059 TA0001", nil},
		// Within one line a value is reported once; on two lines twice.
		{"dedup", "8.8.8.8 8.8.8.8\n8.8.8.8", []string{"ipv4 8.8.8.8", "ipv4 8.8.8.8"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := short(All([]byte(c.in)))
			if !slices.Equal(got, c.want) {
				t.Errorf("Extract(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

func TestLineNumbers(t *testing.T) {
	in := "a\r\n8.8.8.8\r\n\n\nevil.com\nT1110"
	got := All([]byte(in))
	want := []Finding{{IPv4, "8.8.8.8", 2, ""}, {Domain, "evil.com", 5, ""}, {AttackTechnique, "T1110", 6, ""}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestLongLine checks that a line longer than MaxLine is scanned in
// pieces cut at whitespace, every piece with the line's number.
func TestLongLine(t *testing.T) {
	var b strings.Builder
	b.WriteString("first line\n")
	for b.Len() < 300 {
		b.WriteString("word ")
	}
	b.WriteString("evil.com ")
	for b.Len() < 700 {
		b.WriteString("word ")
	}
	b.WriteString("8.8.4.4\nT1110\n")
	e := Extractor{MaxLine: 64}
	var got []Finding
	if err := e.Scan(strings.NewReader(b.String()), func(f Finding) error {
		got = append(got, f)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []Finding{{Domain, "evil.com", 2, ""}, {IPv4, "8.8.4.4", 2, ""}, {AttackTechnique, "T1110", 3, ""}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

type failingReader struct{ after string }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.after == "" {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.after)
	r.after = r.after[n:]
	return n, nil
}

func TestErrors(t *testing.T) {
	var e Extractor
	err := e.Scan(&failingReader{"1\n2\n3"}, func(Finding) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "read line 3") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("read error = %v, want one naming line 3 and its cause", err)
	}
	stop := errors.New("stop")
	calls := 0
	err = e.Scan(strings.NewReader("8.8.8.8\n1.1.1.1\n"), func(Finding) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("emit error: got %v after %d calls, want stop after 1", err, calls)
	}
}

func TestIndicator(t *testing.T) {
	for _, c := range []struct {
		f  Finding
		ok bool
	}{
		{Finding{Type: IPv4, Value: "8.8.8.8"}, true},
		{Finding{Type: Domain, Value: "evil.com"}, true},
		{Finding{Type: SHA256, Value: strings.Repeat("a", 64)}, true},
		{Finding{Type: MD5, Value: strings.Repeat("a", 32)}, true},
		{Finding{Type: SHA1, Value: strings.Repeat("b", 40)}, true},
		{Finding{Type: Email, Value: "a@evil.com"}, false},
		{Finding{Type: CVE, Value: "CVE-2024-3400"}, false},
	} {
		ind, ok := c.f.Indicator()
		if ok != c.ok || (ok && (string(ind.Type) != string(c.f.Type) || ind.Value != c.f.Value)) {
			t.Errorf("%+v.Indicator() = %+v, %v; want ok %v", c.f, ind, ok, c.ok)
		}
	}
}

var (
	hashRe      = map[Type]*regexp.Regexp{MD5: regexp.MustCompile(`^[0-9a-f]{32}$`), SHA1: regexp.MustCompile(`^[0-9a-f]{40}$`), SHA256: regexp.MustCompile(`^[0-9a-f]{64}$`)}
	cveRe       = regexp.MustCompile(`^CVE-(\d{4})-\d{4,19}$`)
	techniqueRe = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
)

// checkValue re-parses a reported value as its type, with parsers other
// than the extractor's where the standard library has one, and checks that
// it is canonical.
func checkValue(f Finding) error {
	switch f.Type {
	case IPv4, IPv6, CIDR, Domain, URL:
		ind, err := intel.NewIndicator(intel.IndicatorType(f.Type), f.Value)
		if err != nil {
			return err
		}
		if ind.Value != f.Value {
			return fmt.Errorf("not canonical: want %q", ind.Value)
		}
		if f.Type == IPv4 || f.Type == IPv6 {
			a := netip.MustParseAddr(f.Value)
			if a.Is4() != (f.Type == IPv4) || a.Is4In6() {
				return errors.New("wrong address family")
			}
		}
		if f.Type == Domain && (!strings.Contains(f.Value, ".") || !validDomain(f.Value)) {
			return errors.New("not a domain under a public suffix")
		}
		if f.Type == URL && !strings.HasPrefix(f.Value, "http://") && !strings.HasPrefix(f.Value, "https://") {
			return errors.New("not an http or https URL")
		}
	case Email:
		a, err := mail.ParseAddress(f.Value)
		if err != nil {
			return err
		}
		at := strings.LastIndexByte(a.Address, '@')
		if a.Address != f.Value || !validDomain(a.Address[at+1:]) || strings.ToLower(a.Address[at+1:]) != a.Address[at+1:] {
			return errors.New("not a canonical address under a public suffix")
		}
	case MD5, SHA1, SHA256:
		if !hashRe[f.Type].MatchString(f.Value) {
			return errors.New("not lower-case hex of the hash's length")
		}
	case CVE:
		m := cveRe.FindStringSubmatch(f.Value)
		if m == nil || m[1] < "1999" {
			return errors.New("not a CVE ID")
		}
	case AttackTechnique:
		if !techniqueRe.MatchString(f.Value) {
			return errors.New("not a technique ID")
		}
	default:
		return errors.New("unknown type")
	}
	return nil
}

// FuzzExtract checks invariants on any text: no panic, every value
// re-parses as its type and is canonical, line numbers are within the
// text, and a value extracted alone yields itself.
func FuzzExtract(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/advisory-*")
	for _, in := range inputs {
		if b, err := os.ReadFile(in); err == nil && !strings.HasSuffix(in, ".golden") {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"hxxp://evil[.]com/a,b", "1.2.3.4/24 ::ffff:1.2.3.4 fe80::1%lo", "x@y.com CVE-2024-3400 T1059.001",
		"&lt;http://a.io/&#x29;&gt;", "http://[::1]:80/(a)", "[.][at][dot]{.}(.)", "\xff\xfe1.2.3.4\xc3",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		if len(text) > 1<<16 {
			return
		}
		lines := bytes.Count(text, []byte("\n")) + 1
		for _, fd := range All(text) {
			if fd.Line < 1 || fd.Line > lines {
				t.Fatalf("%+v: line outside 1..%d", fd, lines)
			}
			if err := checkValue(fd); err != nil {
				t.Fatalf("%+v does not re-parse as %s: %v", fd, fd.Type, err)
			}
			again := All([]byte(fd.Value))
			if !slices.ContainsFunc(again, func(g Finding) bool { return g.Type == fd.Type && g.Value == fd.Value }) {
				t.Fatalf("%+v: extracting %q alone gives %+v", fd, fd.Value, again)
			}
		}
	})
}

// BenchmarkExtract measures extraction speed over the advisories of
// testdata/, repeated to 1 MiB.
func BenchmarkExtract(b *testing.B) {
	inputs, _ := filepath.Glob("testdata/advisory-*")
	var corpus []byte
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden") {
			continue
		}
		t, err := os.ReadFile(in)
		if err != nil {
			b.Fatal(err)
		}
		corpus = append(corpus, t...)
	}
	if len(corpus) == 0 {
		b.Fatal("no advisories in testdata/")
	}
	text := bytes.Repeat(corpus, (1<<20)/len(corpus)+1)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	var e Extractor
	for b.Loop() {
		n := 0
		if err := e.Scan(bytes.NewReader(text), func(Finding) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			b.Fatal("no findings")
		}
	}
}
