package detectors

// Web access logs: the combined format of nginx and Apache.

import (
	"strings"
	"time"
)

// parseWeb reads one line of the combined log format of nginx and Apache:
//
//	<addr> <ident> <user> [<stamp>] "<method> <target> <proto>" <status> <bytes> "<referer>" "<agent>"
//
// A line that does not start with an address followed by a bracketed
// stamp is ignored; one that does but breaks the format later is
// malformed. A request line without spaces (a TLS handshake sent to a
// plain HTTP port, "-") gives an event with empty method and path.
func parseWeb(s string, ev *Event) parseResult {
	sp := strings.IndexByte(s, ' ')
	if sp <= 0 || !tryAddr(s[:sp], &ev.Src) {
		return resIgnored
	}
	rest := s[sp+1:]
	// ident and user
	sp = strings.IndexByte(rest, ' ')
	if sp < 0 {
		return resIgnored
	}
	rest = rest[sp+1:]
	lb := strings.Index(rest, " [")
	if lb < 0 || lb > 256 {
		return resIgnored
	}
	if u := rest[:lb]; u != "-" {
		ev.User = u
	}
	rest = rest[lb+2:]
	rb := strings.IndexByte(rest, ']')
	if rb < 0 {
		return resMalformed
	}
	ev.Stamp, ev.stampKind = rest[:rb], stampWeb
	rest = rest[rb+1:]
	if !strings.HasPrefix(rest, ` "`) {
		return resMalformed
	}
	rest = rest[2:]
	// The request ends at the first unescaped quote (nginx writes \x22,
	// Apache \").
	q := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '\\' {
			i++
			continue
		}
		if rest[i] == '"' {
			q = i
			break
		}
	}
	if q < 0 {
		return resMalformed
	}
	req := rest[:q]
	rest = rest[q+1:]
	if m := strings.IndexByte(req, ' '); m > 0 {
		ev.Method = req[:m]
		t := req[m+1:]
		if e := strings.IndexByte(t, ' '); e >= 0 {
			t = t[:e]
		}
		if qm := strings.IndexByte(t, '?'); qm >= 0 {
			t, ev.Query = t[:qm], t[qm+1:]
		}
		ev.Path = t
	}
	if len(rest) < 4 || rest[0] != ' ' || !isDigit(rest[1]) || !isDigit(rest[2]) || !isDigit(rest[3]) || (len(rest) > 4 && rest[4] != ' ') {
		return resMalformed
	}
	ev.Status = int(rest[1]-'0')*100 + int(rest[2]-'0')*10 + int(rest[3]-'0')
	ev.Kind = KindHTTPRequest
	// combined format: ` <bytes> "<referer>" "<agent>"`; the common format
	// ends at the bytes.
	rest = rest[min(len(rest), 5):]
	if sp := strings.IndexByte(rest, ' '); sp >= 0 {
		if _, rest = quoted(rest[sp+1:]); rest != "" && rest[0] == ' ' {
			ev.Agent, _ = quoted(rest[1:])
		}
	}
	return resMatched
}

// quoted reads a quoted field of an access log at the start of s, whose
// quotes inside are escaped (nginx writes \x22, Apache \"), and returns
// its contents and what follows it. s not starting with a quote, or
// without the closing one, gives "" and "".
func quoted(s string) (field, rest string) {
	if s == "" || s[0] != '"' {
		return "", ""
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[1:i], s[i+1:]
		}
	}
	return "", ""
}

// parseWebStamp reads the stamp of the combined log format,
// "10/Oct/2000:13:55:36 -0700".
func parseWebStamp(s string) (time.Time, bool) {
	if len(s) != 26 || s[2] != '/' || s[6] != '/' || s[11] != ':' || s[14] != ':' || s[17] != ':' || s[20] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := twoDigits(s[0], s[1])
	mon := month(s[3:6])
	y1, ok2 := twoDigits(s[7], s[8])
	y2, ok3 := twoDigits(s[9], s[10])
	h, ok4 := twoDigits(s[12], s[13])
	m, ok5 := twoDigits(s[15], s[16])
	sec, ok6 := twoDigits(s[18], s[19])
	oh, ok7 := twoDigits(s[22], s[23])
	om, ok8 := twoDigits(s[24], s[25])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || !ok8 || mon == 0 || day < 1 || day > 31 || h > 23 || m > 59 || sec > 60 || oh > 14 || om > 59 {
		return time.Time{}, false
	}
	off := time.Duration(oh)*time.Hour + time.Duration(om)*time.Minute
	switch s[21] {
	case '+':
	case '-':
		off = -off
	default:
		return time.Time{}, false
	}
	t := time.Date(y1*100+y2, mon, day, h, m, sec, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, false
	}
	return t.Add(-off), true
}
