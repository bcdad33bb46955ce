package extract

import (
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/meshward/meshward/intel"
	"mvdan.cc/xurls/v2"
)

// urlRe matches an http or https URL at the start of a string; xurls
// leaves trailing prose punctuation out and keeps balanced brackets in.
var urlRe = func() *regexp.Regexp {
	re, err := xurls.StrictMatchingScheme(`https?://`)
	if err != nil {
		panic(err)
	}
	re = regexp.MustCompile(`^(?:` + re.String() + `)`)
	re.Longest()
	return re
}()

// maxURLScan bounds the text matched against urlRe from one scheme: twice
// the longest URL an indicator may be.
const maxURLScan = 4096

// maxCVESeq bounds the digits of a CVE sequence number.
const maxCVESeq = 19

// scanLine finds every indicator of a normalized line. Longer indicators
// are looked for first and claim their span, so the shorter ones inside
// them are not reported again.
func (s *scanner) scanLine(t string, line int) {
	if strings.Contains(t, "://") {
		s.scanURLs(t, line)
	}
	if strings.IndexByte(t, '@') >= 0 {
		s.scanEmails(t, line)
	}
	if strings.Count(t, ":") >= 2 {
		s.scanIPv6(t, line)
	}
	if strings.IndexByte(t, '.') >= 0 {
		s.scanDotted(t, line)
	}
	s.scanWords(t, line)
}

// scanURLs finds the http and https URLs of t: at each "://" after
// "http" or "https", the longest URL xurls matches there before the first
// quote, backtick, angle bracket, backslash, comma or whitespace.
func (s *scanner) scanURLs(t string, line int) {
	for pos := 0; pos < len(t); {
		k := strings.Index(t[pos:], "://")
		if k < 0 {
			return
		}
		colon := pos + k
		pos = colon + 3
		var start int
		switch {
		case colon >= 5 && strings.EqualFold(t[colon-5:colon], "https"):
			start = colon - 5
		case colon >= 4 && strings.EqualFold(t[colon-4:colon], "http"):
			start = colon - 4
		default:
			continue
		}
		if hit, _ := s.overlaps(start, colon+3); hit {
			continue
		}
		// Match within the text up to the first character a URL never
		// goes past, so that xurls decides where the URL ends before it.
		w := t[start:min(len(t), start+maxURLScan)]
		if k := strings.IndexAny(w, urlStops); k >= 0 {
			w = w[:k]
		}
		if m := urlRe.FindStringIndex(w); m != nil {
			s.addURL(w[:m[1]], start, line)
		}
	}
}

// urlStops are the characters a URL never goes past: quotes, backticks,
// angle brackets, commas, backslashes and whitespace.
const urlStops = "\"'`<>,\\ \t\r\n\v\f"

// addURL reports u, found at start, trimmed of trailing prose punctuation,
// if it is an http or https URL.
func (s *scanner) addURL(u string, start, line int) {
	u = trimURL(u)
	if v, flag, ok := canonicalURL(u); ok {
		s.claim(start, start+len(u), true)
		s.add(start, URL, v, line, flag)
	}
}

// trimURL drops trailing prose punctuation and closing brackets that have
// no opening one inside the URL. xurls already leaves them out of a match;
// this guards the canonical form and any other caller.
func trimURL(u string) string {
	var opens, closes [3]int
	const brackets = "()[]{}"
	for i := 0; i < len(u); i++ {
		if k := strings.IndexByte(brackets, u[i]); k >= 0 {
			if k%2 == 0 {
				opens[k/2]++
			} else {
				closes[k/2]++
			}
		}
	}
	for len(u) > 0 {
		c := u[len(u)-1]
		switch c {
		case '.', '!', '?', ';', ':', '*':
			u = u[:len(u)-1]
			continue
		case ')', ']', '}':
			k := strings.IndexByte(brackets, c) / 2
			if opens[k] < closes[k] {
				closes[k]--
				u = u[:len(u)-1]
				continue
			}
		}
		return u
	}
	return u
}

// canonicalURLOnce checks an http or https URL and returns it with its
// scheme and host lower-case and an address host in canonical form.
func canonicalURLOnce(raw string) (v, flag string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return "", "", false
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if host == "" || (port == "" && strings.HasSuffix(u.Host, ":")) {
		return "", "", false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", "", false
		}
		a = a.Unmap()
		flag = addrFlag(a)
		host = a.String()
		if a.Is6() {
			host = "[" + host + "]"
		}
	} else {
		if !validHostname(host) {
			return "", "", false
		}
		flag = hostFlag(host)
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	ind, err := intel.NewIndicator(intel.URL, u.String())
	if err != nil {
		return "", "", false
	}
	return ind.Value, flag, true
}

// canonicalURL returns the canonical form of an http or https URL that
// extracting it alone yields again: the canonical form may drop an empty
// fragment or query and so end in a character a URL does not end with in
// prose ("http://a/!#" becomes "http://a/!"), so such an end is cut off
// and the rest made canonical again, a few times at most.
func canonicalURL(raw string) (v, flag string, ok bool) {
	for range 4 {
		if v, flag, ok = canonicalURLOnce(raw); !ok {
			return "", "", false
		}
		m := urlRe.FindStringIndex(v)
		if m == nil {
			return "", "", false
		}
		if t := trimURL(v[:m[1]]); t != v {
			raw = t
			continue
		}
		return v, flag, true
	}
	return "", "", false
}

// validHostname reports whether h (lower-case) is a DNS host name: labels
// of letters, digits and hyphens, not starting or ending with a hyphen,
// the last one not all digits.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	last := ""
	for l := range strings.SplitSeq(h, ".") {
		if !validLabel(l) {
			return false
		}
		last = l
	}
	return strings.Trim(last, "0123456789") != ""
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// hostFlag flags a URL's host name.
func hostFlag(h string) string {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return FlagLoopback
	}
	return domainFlag(h)
}

// scanEmails finds the e-mail addresses of t.
func (s *scanner) scanEmails(t string, line int) {
	for i := 0; i < len(t); i++ {
		if t[i] != '@' {
			continue
		}
		a := i
		for a > 0 && isLocalByte(t[a-1]) {
			a--
		}
		for a < i && t[a] == '.' {
			a++
		}
		z := i + 1
		for z < len(t) && isHostByte(t[z]) {
			z++
		}
		for z > i+1 && (t[z-1] == '.' || t[z-1] == '-') {
			z--
		}
		local, dom := t[a:i], strings.ToLower(t[i+1:z])
		if local == "" || len(local) > 64 || strings.HasSuffix(local, ".") || strings.Contains(local, "..") ||
			letterBefore(t, a) || letterAfter(t, z) {
			continue
		}
		if !validDomain(dom) {
			continue
		}
		if hit, _ := s.overlaps(a, z); hit {
			continue
		}
		s.claim(a, z, false)
		s.add(a, Email, local+"@"+dom, line, domainFlag(dom))
		i = z - 1
	}
}

// scanIPv6 finds the IPv6 addresses and networks of t.
func (s *scanner) scanIPv6(t string, line int) {
	for i := 0; i < len(t); i++ {
		if t[i] != ':' {
			continue
		}
		a := i
		for a > 0 && isV6Byte(t[a-1]) {
			a--
		}
		z := i
		for z < len(t) && isV6Byte(t[z]) {
			z++
		}
		i = z
		if wordAfter(t, z) {
			continue
		}
		cand, start := t[a:z], a
		if wordBefore(t, a) || (strings.HasPrefix(cand, ":") && !strings.HasPrefix(cand, "::")) {
			// "src:fe80::1" or ":fe80::1": what precedes the first
			// colon is not part of the address.
			k := strings.IndexByte(cand, ':')
			if k+1 >= len(cand) || cand[k+1] == ':' {
				continue
			}
			cand, start = cand[k+1:], start+k+1
		}
		cand = strings.TrimRight(cand, ".")
		if strings.HasSuffix(cand, ":") && !strings.HasSuffix(cand, "::") {
			cand = cand[:len(cand)-1]
		}
		if strings.Count(cand, ":") < 2 {
			continue
		}
		addr, err := netip.ParseAddr(cand)
		if err != nil {
			continue
		}
		end := start + len(cand)
		if hit, _ := s.overlaps(start, end); hit {
			continue
		}
		if bits, n, ok := prefixLen(t, end, 128); ok {
			if p, err := netip.ParsePrefix(cand + "/" + bits); err == nil {
				s.claim(start, end+n, false)
				s.addCIDR(start, p, line)
				continue
			}
		}
		s.claim(start, end, false)
		s.addAddr(start, addr, line)
	}
}

// prefixLen reads "/N" at t[i:], N a prefix length up to maxBits followed
// by no word character; n is the length of "/N".
func prefixLen(t string, i, maxBits int) (bits string, n int, ok bool) {
	if i >= len(t) || t[i] != '/' {
		return "", 0, false
	}
	j := i + 1
	for j < len(t) && j-i <= 3 && isDigit(t[j]) {
		j++
	}
	if j == i+1 || wordAfter(t, j) || (j < len(t) && t[j] == '.' && j+1 < len(t) && isDigit(t[j+1])) {
		return "", 0, false
	}
	return t[i+1 : j], j - i, true
}

func (s *scanner) addAddr(pos int, a netip.Addr, line int) {
	a = a.Unmap().WithZone("")
	t := IPv6
	if a.Is4() {
		t = IPv4
	}
	s.add(pos, t, a.String(), line, addrFlag(a))
}

func (s *scanner) addCIDR(pos int, p netip.Prefix, line int) {
	ind, err := intel.NewIndicator(intel.CIDR, p.String())
	if err != nil {
		return
	}
	s.add(pos, CIDR, ind.Value, line, prefixFlag(p.Masked()))
}

// scanDotted finds the IPv4 addresses, IPv4 networks and domains of t:
// runs of letters, digits, dots, hyphens and underscores with a dot in
// them.
func (s *scanner) scanDotted(t string, line int) {
	for i := 0; i < len(t); i++ {
		if !isHostByte(t[i]) && t[i] != '_' {
			continue
		}
		a := i
		z := i
		dot := false
		for z < len(t) && (isHostByte(t[z]) || t[z] == '_') {
			dot = dot || t[z] == '.'
			z++
		}
		i = z
		if !dot || letterBefore(t, a) || letterAfter(t, z) {
			continue
		}
		if hit, _ := s.overlaps(a, z); hit {
			continue
		}
		// Markdown emphasis: _evil.com_ (but not __init__.py).
		if n := len(t[a:z]) - len(strings.TrimLeft(t[a:z], "_")); n > 0 && n < z-a && strings.HasSuffix(t[a:z], t[a:a+n]) {
			if m := len(t[a:z]) - len(strings.TrimRight(t[a:z], "_")); m == n {
				a, z = a+n, z-n
			}
		}
		run := t[a:z]
		if s.dottedIPv4(t, run, a, z, line) {
			continue
		}
		s.dottedDomain(run, a, line)
	}
}

// dottedIPv4 reports IPv4 addresses in run (t[a:z]): the run, or each of
// its hyphen-separated parts, made of exactly four dotted numbers. It
// reports whether the run was made of addresses.
func (s *scanner) dottedIPv4(t, run string, a, z, line int) bool {
	if strings.Trim(run, "0123456789.-") != "" {
		return false
	}
	found := false
	off := a
	for part := range strings.SplitSeq(run, "-") {
		p, start := part, off
		off += len(part) + 1
		lead := len(p) - len(strings.TrimLeft(p, "."))
		p = strings.TrimRight(p[lead:], ".")
		start += lead
		if strings.Count(p, ".") != 3 {
			continue
		}
		addr, err := netip.ParseAddr(p)
		if err != nil || !addr.Is4() {
			continue
		}
		found = true
		end := start + len(p)
		if end == z {
			if bits, n, ok := prefixLen(t, z, 32); ok {
				if pf, err := netip.ParsePrefix(p + "/" + bits); err == nil {
					s.claim(start, z+n, false)
					s.addCIDR(start, pf, line)
					continue
				}
			}
		}
		s.claim(start, end, false)
		s.addAddr(start, addr, line)
	}
	return found
}

// dottedDomain reports run (at a) as a domain if, trimmed of leading and
// trailing dots and hyphens, it is one.
func (s *scanner) dottedDomain(run string, a, line int) {
	if strings.IndexByte(run, '_') >= 0 {
		return
	}
	lead := len(run) - len(strings.TrimLeft(run, ".-"))
	d := strings.TrimRight(run[lead:], ".-")
	if d == "" {
		return
	}
	d = strings.ToLower(d)
	if !validDomain(d) {
		return
	}
	s.claim(a+lead, a+lead+len(d), false)
	s.add(a+lead, Domain, d, line, domainFlag(d))
}

// scanWords finds the hashes, CVE IDs and ATT&CK technique IDs of t: runs
// of ASCII letters, digits and underscores.
func (s *scanner) scanWords(t string, line int) {
	for i := 0; i < len(t); i++ {
		if !isWordByte(t[i]) {
			continue
		}
		a := i
		z := i
		for z < len(t) && isWordByte(t[z]) {
			z++
		}
		i = z - 1
		if letterBefore(t, a) || letterAfter(t, z) {
			continue
		}
		w := t[a:z]
		switch {
		case len(w) == 32 || len(w) == 40 || len(w) == 64:
			if !isHex(w) || strings.Trim(w, "0123456789") == "" {
				continue
			}
			if hit, onlyURL := s.overlaps(a, z); hit && !onlyURL {
				continue
			}
			typ := map[int]Type{32: MD5, 40: SHA1, 64: SHA256}[len(w)]
			s.add(a, typ, strings.ToLower(w), line, "")
		case len(w) == 3 && strings.EqualFold(w, "cve"):
			if v, end, ok := cveAt(t, z); ok {
				if hit, _ := s.overlaps(a, end); !hit {
					s.add(a, CVE, v, line, "")
				}
				i = end - 1
			}
		case len(w) == 5 && (w[0] == 'T' || w[0] == 't') && allDigits(w[1:]):
			v, end, ok := techniqueAt(t, w, z)
			if !ok {
				continue
			}
			if hit, _ := s.overlaps(a, end); !hit {
				s.add(a, AttackTechnique, v, line, "")
			}
			i = end - 1
		}
	}
}

// cveAt reads "-YYYY-NNNN..." at t[i:] (any Unicode hyphen or dash for
// the hyphens) and returns the canonical CVE ID and where it ends.
func cveAt(t string, i int) (v string, end int, ok bool) {
	j, ok := dashAt(t, i)
	if !ok {
		return "", 0, false
	}
	y := j
	for j < len(t) && isDigit(t[j]) {
		j++
	}
	if j-y != 4 || t[y:j] < "1999" {
		return "", 0, false
	}
	year := t[y:j]
	j, ok = dashAt(t, j)
	if !ok {
		return "", 0, false
	}
	n := j
	for j < len(t) && isDigit(t[j]) {
		j++
	}
	if j-n < 4 || j-n > maxCVESeq || wordAfter(t, j) {
		return "", 0, false
	}
	return "CVE-" + year + "-" + t[n:j], j, true
}

// dashAt reads a hyphen or dash at t[i:] and returns the index after it.
func dashAt(t string, i int) (int, bool) {
	if i >= len(t) {
		return 0, false
	}
	if t[i] == '-' {
		return i + 1, true
	}
	r, n := utf8.DecodeRuneInString(t[i:])
	if unicode.Is(unicode.Pd, r) || r == '\u2212' {
		return i + n, true
	}
	return 0, false
}

// techniqueAt completes the technique ID w (T and four digits, ending at
// t[z]) with a ".NNN" sub-technique suffix if one follows.
func techniqueAt(t, w string, z int) (v string, end int, ok bool) {
	v = "T" + w[1:]
	if z+1 < len(t) && t[z] == '.' && isDigit(t[z+1]) {
		j := z + 1
		for j < len(t) && isDigit(t[j]) {
			j++
		}
		if j-z-1 != 3 || wordAfter(t, j) || (j+1 < len(t) && t[j] == '.' && isDigit(t[j+1])) {
			return "", 0, false
		}
		return v + t[z:j], j, true
	}
	return v, z, true
}

// validDomain reports whether d (lower-case, no trailing dot) is a domain
// that ends in a real ICANN public suffix and is more than that suffix;
// names under the example and test top-level domains (RFC 2606) count too.
func validDomain(d string) bool {
	if !validHostname(d) || strings.IndexByte(d, '.') < 0 {
		return false
	}
	tld := d[strings.LastIndexByte(d, '.')+1:]
	if tld == "example" || tld == "test" {
		return true
	}
	if !icannSuffix(tld) {
		return false
	}
	ps, icann := publicSuffix(d)
	return !(icann && ps == d)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isWordByte(c byte) bool { return isAlnum(c) || c == '_' }

func isHostByte(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

func isLocalByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isV6Byte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// wordBefore reports whether the character before t[i] is a letter, digit
// or underscore (of any script).
func wordBefore(t string, i int) bool {
	if i == 0 {
		return false
	}
	if c := t[i-1]; c < utf8.RuneSelf {
		return isWordByte(c)
	}
	return letterBefore(t, i)
}

// wordAfter is wordBefore for the character at t[i].
func wordAfter(t string, i int) bool {
	if i >= len(t) {
		return false
	}
	if c := t[i]; c < utf8.RuneSelf {
		return isWordByte(c)
	}
	return letterAfter(t, i)
}

// letterBefore reports whether the character before t[i] is a non-ASCII
// letter or digit: an ASCII run that starts there is part of a longer
// word.
func letterBefore(t string, i int) bool {
	if i == 0 || t[i-1] < utf8.RuneSelf {
		return false
	}
	r, _ := utf8.DecodeLastRuneInString(t[:i])
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// letterAfter is letterBefore for the character at t[i].
func letterAfter(t string, i int) bool {
	if i >= len(t) || t[i] < utf8.RuneSelf {
		return false
	}
	r, _ := utf8.DecodeRuneInString(t[i:])
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}
