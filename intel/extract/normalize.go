package extract

import (
	"html"
	"strings"
)

// normalize decodes a line's HTML entities and refangs it.
func normalize(raw []byte) string {
	s := string(raw)
	if strings.IndexByte(s, '&') >= 0 {
		s = html.UnescapeString(s)
	}
	return refang(s)
}

// bracketTokens are the defanged forms inside brackets, lower-case, and
// what each stands for. spaced says whether " [.] " (one space either
// side) also stands for it.
var bracketTokens = []struct {
	in, out string
	spaced  bool
}{
	{".", ".", true},
	{"dot", ".", true},
	{"://", "://", false},
	{":", ":", false},
	{"at", "@", true},
	{"@", "@", true},
}

// refang undoes the usual defanging of indicators: hxxp for http, [.], (.),
// {.} and [dot] for a dot, [:] and [://] for the scheme's separators, [at]
// and [@] for the @ of an address.
func refang(s string) string {
	var b []byte // nil until the first defanged form
	for i := 0; i < len(s); {
		c := s[i]
		out, n := "", 0
		switch c {
		case '[', '(', '{':
			var spaced bool
			if out, n, spaced = bracketToken(s[i:]); n > 0 && spaced && i > 0 && s[i-1] == ' ' && i+n < len(s) && s[i+n] == ' ' {
				if b == nil {
					b = append(make([]byte, 0, len(s)), s[:i]...)
				}
				b = b[:len(b)-1] // the space before
				n++              // and the one after
			}
		case 'h', 'H':
			if i+4 < len(s) && strings.EqualFold(s[i:i+4], "hxxp") {
				if next := s[i+4]; next == 's' || next == 'S' || next == ':' || next == '[' {
					out, n = "http", 4
				}
			}
		}
		if n == 0 {
			if b != nil {
				b = append(b, c)
			}
			i++
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(s)), s[:i]...)
		}
		b = append(b, out...)
		i += n
	}
	if b == nil {
		return s
	}
	return string(b)
}

// bracketToken matches a defanged token at the start of s ("[.]", "(dot)",
// "{.}" and so on) and returns what it stands for and its length.
func bracketToken(s string) (out string, n int, spaced bool) {
	var closer byte
	switch s[0] {
	case '[':
		closer = ']'
	case '(':
		closer = ')'
	case '{':
		closer = '}'
	}
	for _, t := range bracketTokens {
		end := 1 + len(t.in)
		if end < len(s) && s[end] == closer && strings.EqualFold(s[1:end], t.in) {
			return t.out, end + 1, t.spaced
		}
	}
	return "", 0, false
}
