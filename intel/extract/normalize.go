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
	if !needsRefang(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '[', '(', '{':
			if out, n, spaced := bracketToken(s[i:]); n > 0 {
				if spaced && len(b) > 0 && b[len(b)-1] == ' ' && i+n < len(s) && s[i+n] == ' ' {
					b = b[:len(b)-1]
					n++
				}
				b = append(b, out...)
				i += n
				continue
			}
		case 'h', 'H':
			if i+4 < len(s) && strings.EqualFold(s[i:i+4], "hxxp") {
				if next := s[i+4]; next == 's' || next == 'S' || next == ':' || next == '[' {
					b = append(b, "http"...)
					i += 4
					continue
				}
			}
		}
		b = append(b, c)
		i++
	}
	return string(b)
}

// needsRefang reports whether s may hold a defanged form.
func needsRefang(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[', '(', '{':
			return true
		case 'x', 'X':
			if i > 0 && (s[i-1] == 'h' || s[i-1] == 'H') {
				return true
			}
		}
	}
	return false
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
