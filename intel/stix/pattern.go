package stix

import (
	"errors"
	"fmt"
	"strings"

	"github.com/meshward/meshward/intel"
)

// ErrPattern is wrapped by every pattern error; a *PatternError tells
// where and what.
var ErrPattern = errors.New("stix pattern")

// ErrUnsupported is wrapped by a *PatternError for valid STIX patterning
// that Meshward does not turn into indicators (AND, FOLLOWEDBY, MATCHES,
// LIKE, qualifiers, other object types...).
var ErrUnsupported = errors.New("unsupported")

// MaxPattern bounds a pattern's length in bytes.
const MaxPattern = 16 << 10

// maxComparisons bounds the comparisons of one pattern.
const maxComparisons = 1024

// Hash indicator types Meshward may know besides SHA-256. They are named
// here, not taken from intel, so that a pattern naming one yields an
// indicator whenever intel.NewIndicator accepts the type.
const (
	typeMD5  intel.IndicatorType = "md5"
	typeSHA1 intel.IndicatorType = "sha1"
)

// PatternError is a pattern that cannot be used: Pos is the byte offset
// (0-based) in the pattern where the problem lies.
type PatternError struct {
	Pos         int
	Msg         string
	Unsupported bool
}

func (e *PatternError) Error() string {
	if e.Unsupported {
		return fmt.Sprintf("stix pattern: at offset %d: unsupported: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("stix pattern: at offset %d: %s", e.Pos, e.Msg)
}

// Is makes a *PatternError match ErrPattern and, when unsupported,
// ErrUnsupported.
func (e *PatternError) Is(target error) bool {
	return target == ErrPattern || (e.Unsupported && target == ErrUnsupported)
}

// ParsePattern turns a STIX 2.1 pattern of the subset Meshward uses into
// indicators, in the order they appear, without duplicates. The subset:
// equality comparisons of ipv4-addr:value, ipv6-addr:value (an address or
// a CIDR), domain-name:value, url:value and file:hashes.<MD5|SHA-1|SHA-256>
// ('SHA-256', 'SHA256', SHA256 and the like), joined by OR inside one
// observation expression ([...]) and between observation expressions,
// with parentheses. Anything else is an error naming the offset and what
// is unsupported.
func ParsePattern(pattern string) ([]intel.Indicator, error) {
	if len(pattern) > MaxPattern {
		return nil, &PatternError{Pos: MaxPattern, Msg: fmt.Sprintf("pattern is %d bytes, limit %d", len(pattern), MaxPattern)}
	}
	p := &parser{src: pattern}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tEOF {
		return nil, &PatternError{Pos: 0, Msg: "empty pattern"}
	}
	if err := p.observationOr(); err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.unexpected("end of pattern")
	}
	return p.out, nil
}

// FormatPattern is the STIX pattern of one indicator; ParsePattern turns
// it back into ind.
func FormatPattern(ind intel.Indicator) (string, error) {
	var path string
	switch ind.Type {
	case intel.IPv4:
		path = "ipv4-addr:value"
	case intel.IPv6:
		path = "ipv6-addr:value"
	case intel.CIDR:
		if strings.Contains(ind.Value, ":") {
			path = "ipv6-addr:value"
		} else {
			path = "ipv4-addr:value"
		}
	case intel.Domain:
		path = "domain-name:value"
	case intel.URL:
		path = "url:value"
	case intel.SHA256:
		path = "file:hashes.'SHA-256'"
	case typeSHA1:
		path = "file:hashes.'SHA-1'"
	case typeMD5:
		path = "file:hashes.MD5"
	default:
		return "", fmt.Errorf("%w: no pattern for indicator type %q", ErrPattern, ind.Type)
	}
	return "[" + path + " = " + quote(ind.Value) + "]", nil
}

// quote is a STIX string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

type tokKind int

const (
	tEOF tokKind = iota
	tLBrack
	tRBrack
	tLParen
	tRParen
	tColon
	tDot
	tOp     // a comparison operator
	tIdent  // a word: keyword, object type, property
	tString // a quoted string, unescaped
	tOther  // a literal or symbol outside the subset
)

type token struct {
	kind tokKind
	pos  int
	text string
}

type parser struct {
	src  string
	pos  int
	tok  token
	out  []intel.Indicator
	seen map[intel.Indicator]bool
	n    int // comparisons
}

func (p *parser) errAt(pos int, format string, args ...any) error {
	return &PatternError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) unsupported(pos int, format string, args ...any) error {
	return &PatternError{Pos: pos, Msg: fmt.Sprintf(format, args...), Unsupported: true}
}

func (p *parser) unexpected(want string) error {
	if p.tok.kind == tEOF {
		return p.errAt(p.tok.pos, "unexpected end of pattern, want %s", want)
	}
	return p.errAt(p.tok.pos, "unexpected %q, want %s", p.tok.text, want)
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// next reads the next token into p.tok.
func (p *parser) next() error {
	for p.pos < len(p.src) && strings.IndexByte(" \t\r\n", p.src[p.pos]) >= 0 {
		p.pos++
	}
	start := p.pos
	if p.pos >= len(p.src) {
		p.tok = token{kind: tEOF, pos: start}
		return nil
	}
	c := p.src[p.pos]
	one := func(k tokKind) error {
		p.pos++
		p.tok = token{kind: k, pos: start, text: p.src[start:p.pos]}
		return nil
	}
	switch c {
	case '[':
		return one(tLBrack)
	case ']':
		return one(tRBrack)
	case '(':
		return one(tLParen)
	case ')':
		return one(tRParen)
	case ':':
		return one(tColon)
	case '.':
		return one(tDot)
	case '=':
		return one(tOp)
	case '!', '<', '>':
		p.pos++
		if p.pos < len(p.src) && p.src[p.pos] == '=' {
			p.pos++
		}
		p.tok = token{kind: tOp, pos: start, text: p.src[start:p.pos]}
		return nil
	case '\'':
		return p.str()
	}
	if isWordByte(c) {
		for p.pos < len(p.src) && isWordByte(p.src[p.pos]) {
			p.pos++
		}
		w := p.src[start:p.pos]
		// A typed literal: b'...', h'...', t'...'.
		if p.pos < len(p.src) && p.src[p.pos] == '\'' && (w == "b" || w == "h" || w == "t") {
			return p.unsupported(start, "%s'...' literals (only plain strings are compared)", w)
		}
		p.tok = token{kind: tIdent, pos: start, text: w}
		return nil
	}
	p.pos++
	p.tok = token{kind: tOther, pos: start, text: p.src[start:p.pos]}
	return nil
}

// str reads a quoted string; the only escapes are \' and \\.
func (p *parser) str() error {
	start := p.pos
	p.pos++ // the opening quote
	var b strings.Builder
	for {
		if p.pos >= len(p.src) {
			return p.errAt(start, "unterminated string")
		}
		c := p.src[p.pos]
		switch c {
		case '\'':
			p.pos++
			p.tok = token{kind: tString, pos: start, text: b.String()}
			return nil
		case '\\':
			if p.pos+1 >= len(p.src) {
				return p.errAt(p.pos, "unterminated string")
			}
			e := p.src[p.pos+1]
			if e != '\'' && e != '\\' {
				return p.errAt(p.pos, `bad escape \%c in string (only \' and \\)`, e)
			}
			b.WriteByte(e)
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// keyword reports whether the current token is the word kw (patterning
// keywords are upper case; lower case is accepted too).
func (p *parser) keyword(kw string) bool {
	return p.tok.kind == tIdent && strings.EqualFold(p.tok.text, kw)
}

// Keywords that join or qualify expressions outside the subset.
var unsupportedJoins = map[string]string{
	"AND":        "AND (only OR joins comparisons and observations)",
	"FOLLOWEDBY": "FOLLOWEDBY",
	"WITHIN":     "the WITHIN qualifier",
	"REPEATS":    "the REPEATS qualifier",
	"START":      "the START/STOP qualifier",
	"STOP":       "the START/STOP qualifier",
}

func (p *parser) checkJoin() error {
	if p.tok.kind == tIdent {
		if what, ok := unsupportedJoins[strings.ToUpper(p.tok.text)]; ok {
			return p.unsupported(p.tok.pos, "%s", what)
		}
	}
	return nil
}

// observationOr: observation ( OR observation )*
func (p *parser) observationOr() error {
	for {
		if err := p.observation(); err != nil {
			return err
		}
		if err := p.checkJoin(); err != nil {
			return err
		}
		if !p.keyword("OR") {
			return nil
		}
		if err := p.next(); err != nil {
			return err
		}
	}
}

// observation: '[' comparisonOr ']' | '(' observationOr ')'
func (p *parser) observation() error {
	switch p.tok.kind {
	case tLParen:
		if err := p.next(); err != nil {
			return err
		}
		if err := p.observationOr(); err != nil {
			return err
		}
		if p.tok.kind != tRParen {
			return p.unexpected("')'")
		}
		return p.next()
	case tLBrack:
		if err := p.next(); err != nil {
			return err
		}
		if err := p.comparisonOr(); err != nil {
			return err
		}
		if p.tok.kind != tRBrack {
			return p.unexpected("']'")
		}
		return p.next()
	}
	return p.unexpected("'[' or '('")
}

// comparisonOr: comparison ( OR comparison )*
func (p *parser) comparisonOr() error {
	for {
		if err := p.comparisonTerm(); err != nil {
			return err
		}
		if err := p.checkJoin(); err != nil {
			return err
		}
		if !p.keyword("OR") {
			return nil
		}
		if err := p.next(); err != nil {
			return err
		}
	}
}

// comparisonTerm: '(' comparisonOr ')' | comparison
func (p *parser) comparisonTerm() error {
	if p.tok.kind == tLParen {
		if err := p.next(); err != nil {
			return err
		}
		if err := p.comparisonOr(); err != nil {
			return err
		}
		if p.tok.kind != tRParen {
			return p.unexpected("')'")
		}
		return p.next()
	}
	return p.comparison()
}

// comparison: objecttype ':' path '=' string
func (p *parser) comparison() error {
	start := p.tok.pos
	if p.keyword("NOT") {
		return p.unsupported(p.tok.pos, "NOT")
	}
	if p.tok.kind != tIdent {
		return p.unexpected("an object path such as ipv4-addr:value")
	}
	objType := p.tok.text
	if err := p.next(); err != nil {
		return err
	}
	if p.tok.kind != tColon {
		return p.unexpected("':' after the object type")
	}
	if err := p.next(); err != nil {
		return err
	}
	var path []string
	for {
		switch p.tok.kind {
		case tIdent, tString:
			path = append(path, p.tok.text)
		default:
			return p.unexpected("a property name")
		}
		if err := p.next(); err != nil {
			return err
		}
		if p.tok.kind == tLBrack {
			return p.unsupported(p.tok.pos, "list index in an object path")
		}
		if p.tok.kind != tDot {
			break
		}
		if err := p.next(); err != nil {
			return err
		}
	}
	typ, err := p.indicatorType(start, objType, path)
	if err != nil {
		return err
	}
	opPos := p.tok.pos
	switch {
	case p.tok.kind == tOp && p.tok.text == "=":
	case p.tok.kind == tOp:
		return p.unsupported(opPos, "operator %s (only =)", p.tok.text)
	case p.tok.kind == tIdent:
		return p.unsupported(opPos, "operator %s (only =)", strings.ToUpper(p.tok.text))
	default:
		return p.unexpected("'='")
	}
	if err := p.next(); err != nil {
		return err
	}
	if p.tok.kind != tString {
		if p.tok.kind == tIdent || p.tok.kind == tOther {
			return p.unsupported(p.tok.pos, "non-string value %q", p.tok.text)
		}
		return p.unexpected("a quoted string")
	}
	valPos, val := p.tok.pos, p.tok.text
	if p.n++; p.n > maxComparisons {
		return p.errAt(start, "more than %d comparisons", maxComparisons)
	}
	if typ == intel.IPv4 || typ == intel.IPv6 {
		if strings.Contains(val, "/") {
			typ = intel.CIDR
		}
	}
	ind, err := intel.NewIndicator(typ, val)
	if err != nil {
		return p.errAt(valPos, "%s: %v", objType, err)
	}
	if ind.Type == intel.CIDR {
		// A /32 or /128 is one address.
		if pfx, ok := ind.Prefix(); ok && pfx.IsSingleIP() {
			ind = intel.IndicatorFromAddr(pfx.Addr())
		}
		if pfx, _ := ind.Prefix(); (objType == "ipv4-addr") != pfx.Addr().Is4() {
			return p.errAt(valPos, "%s value %q is not an %s", objType, val, objType)
		}
	} else if (typ == intel.IPv4 || typ == intel.IPv6) && ind.Type != typ {
		return p.errAt(valPos, "%s value %q is not an %s", objType, val, objType)
	}
	if p.seen == nil {
		p.seen = make(map[intel.Indicator]bool)
	}
	if !p.seen[ind] {
		p.seen[ind] = true
		p.out = append(p.out, ind)
	}
	return p.next()
}

// indicatorType maps an object path to an indicator type.
func (p *parser) indicatorType(pos int, objType string, path []string) (intel.IndicatorType, error) {
	prop := strings.Join(path, ".")
	value := len(path) == 1 && path[0] == "value"
	switch objType {
	case "ipv4-addr":
		if value {
			return intel.IPv4, nil
		}
	case "ipv6-addr":
		if value {
			return intel.IPv6, nil
		}
	case "domain-name":
		if value {
			return intel.Domain, nil
		}
	case "url":
		if value {
			return intel.URL, nil
		}
	case "file":
		if len(path) == 2 && path[0] == "hashes" {
			if t, ok := HashType(path[1]); ok {
				return t, nil
			}
			return "", p.unsupported(pos, "file hash %q (only MD5, SHA-1 and SHA-256)", path[1])
		}
	default:
		return "", p.unsupported(pos, "object type %q (only ipv4-addr, ipv6-addr, domain-name, url and file)", objType)
	}
	return "", p.unsupported(pos, "property %s:%s", objType, prop)
}

// HashType maps a STIX hash algorithm name (MD5, SHA-1, SHA-256, and the
// spellings without the dash, in any case) to an indicator type.
func HashType(name string) (intel.IndicatorType, bool) {
	switch strings.ReplaceAll(strings.ToUpper(name), "-", "") {
	case "SHA256":
		return intel.SHA256, true
	case "SHA1":
		return typeSHA1, true
	case "MD5":
		return typeMD5, true
	}
	return "", false
}
