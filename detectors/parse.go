package detectors

import (
	"net/netip"
	"strings"
	"time"
)

// parseResult classifies one line for a parser.
type parseResult uint8

const (
	// resIgnored: not a line any parser is about (another program, or a
	// message that reports nothing).
	resIgnored parseResult = iota
	// resMatched: an event with a readable source address.
	resMatched
	// resMalformed: a line of a known kind whose fields cannot be read.
	resMalformed
)

// splitSyslog strips an optional "<PRI>" and the timestamp from a syslog
// line. It recognises the classic BSD stamp ("Nov 28 12:00:01") and the
// RFC 3339 stamp of rsyslog's high-precision format. When there is no stamp
// it returns the line as rest.
func splitSyslog(line string) (stamp, rest string) {
	if len(line) > 2 && line[0] == '<' {
		if i := strings.IndexByte(line[:min(len(line), 6)], '>'); i > 1 {
			line = line[i+1:]
		}
	}
	switch {
	case len(line) >= 16 && line[3] == ' ' && line[6] == ' ' && line[9] == ':' && line[12] == ':' && line[15] == ' ':
		return line[:15], line[16:]
	case len(line) >= 20 && isDigit(line[0]) && line[4] == '-' && line[10] == 'T':
		if i := strings.IndexByte(line, ' '); i >= 19 {
			return line[:i], line[i+1:]
		}
	}
	return "", line
}

// parseLine recognises one log line and extracts its event. It never
// allocates: the event's strings point into line.
func parseLine(line string, ev *Event) parseResult {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	stamp, rest := splitSyslog(line)
	if stamp == "" && len(rest) > 0 && (isHex(rest[0]) || rest[0] == ':') {
		// A web access log line starts with the client address.
		if res := parseWeb(rest, ev); res != resIgnored {
			return res
		}
	}
	prog, msg, ok := syslogMessage(rest, stamp != "")
	if !ok {
		return resIgnored
	}
	var res parseResult
	switch prog {
	case "sshd", "sshd-session":
		res = parseSSHMessage(msg, ev)
	case "kernel":
		res = parseFirewall(msg, ev)
	case "nginx", "apache2", "httpd", "apache":
		// An access log sent to syslog: the access log's own stamp,
		// which has a zone, is the time.
		res = parseWeb(msg, ev)
		if res == resMatched {
			ev.Program = prog
		}
		return res
	default:
		return resIgnored
	}
	if res == resMatched {
		ev.Program = prog
		ev.Stamp = stamp
	}
	return res
}

// syslogMessage returns the program and message of a syslog line. rest is
// the line after its timestamp; when the line had a timestamp the host
// name comes first. Without a timestamp the tag may come first
// ("sshd[1]: ...", as journald's short output without a stamp) or after a
// host name.
func syslogMessage(rest string, hasStamp bool) (prog, msg string, ok bool) {
	if hasStamp {
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			return "", "", false
		}
		return syslogTag(rest[i+1:])
	}
	if prog, msg, ok := syslogTag(rest); ok {
		return prog, msg, true
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		return syslogTag(rest[i+1:])
	}
	return "", "", false
}

// syslogTag reads the "prog[pid]: " or "prog: " tag and returns the
// program and the message.
func syslogTag(s string) (prog, msg string, ok bool) {
	i := 0
	for i < len(s) && i < 64 && isTagByte(s[i]) {
		i++
	}
	if i == 0 || i == len(s) {
		return "", "", false
	}
	prog, s = s[:i], s[i:]
	if s[0] == '[' {
		j := strings.IndexByte(s, ']')
		if j < 2 {
			return "", "", false
		}
		for k := 1; k < j; k++ {
			if !isDigit(s[k]) {
				return "", "", false
			}
		}
		s = s[j+1:]
	}
	if len(s) < 2 || s[0] != ':' || s[1] != ' ' {
		return "", "", false
	}
	return prog, s[2:], true
}

func isTagByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-' || c == '_' || c == '.' || c == '/'
}

func isHex(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// parseSSHMessage recognises the OpenSSH messages of a failed or hostile
// connection. User names are chosen by the attacker and may contain
// " from <addr> port <n>": the address sshd writes after a user name is
// found from the end of the message, never from the start.
func parseSSHMessage(msg string, ev *Event) parseResult {
	msg = strings.TrimSuffix(msg, " [preauth]")
	switch {
	case strings.HasPrefix(msg, "Failed "):
		// "Failed <method> for [invalid user ]<user> from <addr> port <n> ssh2[: <key>]"
		m := msg[len("Failed "):]
		sp := strings.IndexByte(m, ' ')
		if sp <= 0 || !strings.HasPrefix(m[sp:], " for ") {
			return resIgnored
		}
		ev.Kind, ev.Method = KindSSHFailed, m[:sp]
		u := m[sp+len(" for "):]
		if strings.HasPrefix(u, "invalid user ") {
			ev.invalid = true
			u = u[len("invalid user "):]
		}
		return sshFrom(msg, u, ev)
	case strings.HasPrefix(msg, "Invalid user "):
		ev.Kind = KindSSHInvalidUser
		return sshFrom(msg, msg[len("Invalid user "):], ev)
	case strings.HasPrefix(msg, "error: maximum authentication attempts exceeded for "):
		// "... for [invalid user ]<user> from <addr> port <n> ssh2"
		ev.Kind = KindSSHMaxAuth
		u := msg[len("error: maximum authentication attempts exceeded for "):]
		u = strings.TrimPrefix(u, "invalid user ")
		return sshFrom(msg, u, ev)
	case strings.HasPrefix(msg, "Disconnecting "):
		// "Disconnecting [authenticating|invalid] user <user> <addr> port <n>: Too many authentication failures"
		i := strings.LastIndex(msg, ": Too many authentication failures")
		if i < 0 {
			return resIgnored
		}
		ev.Kind = KindSSHMaxAuth
		return sshUserAddrPort(msg[len("Disconnecting "):i], ev)
	case strings.HasPrefix(msg, "Connection reset by "):
		ev.Kind = KindSSHPreauthReset
		return sshUserAddrPort(msg[len("Connection reset by "):], ev)
	case strings.HasPrefix(msg, "Connection closed by "):
		ev.Kind = KindSSHPreauthDisconnect
		return sshUserAddrPort(msg[len("Connection closed by "):], ev)
	case strings.HasPrefix(msg, "Disconnected from "):
		ev.Kind = KindSSHPreauthDisconnect
		return sshUserAddrPort(msg[len("Disconnected from "):], ev)
	case strings.HasPrefix(msg, "Received disconnect from "):
		// "Received disconnect from <addr> port <n>:11: <reason chosen by the client>"
		ev.Kind = KindSSHPreauthDisconnect
		m := msg[len("Received disconnect from "):]
		sp := strings.IndexByte(m, ' ')
		if sp < 0 || !readAddr(m[:sp], &ev.Src) {
			return resMalformed
		}
		m = m[sp:]
		if !strings.HasPrefix(m, " port ") {
			return resMalformed
		}
		p, ok := parsePortEnd(m[len(" port "):], ':')
		if !ok {
			return resMalformed
		}
		ev.Port = p
		return resMatched
	case strings.HasPrefix(msg, "pam_unix(sshd:auth): authentication failure;"):
		// "...; logname= uid=0 euid=0 tty=ssh ruser= rhost=<addr>  user=<user>"
		ev.Kind = KindSSHPAMFailure
		i := strings.Index(msg, " rhost=")
		if i < 0 {
			return resMalformed
		}
		h := msg[i+len(" rhost="):]
		end := strings.IndexByte(h, ' ')
		if end < 0 {
			end = len(h)
		}
		if !readAddr(h[:end], &ev.Src) {
			return resMalformed // a host name (UseDNS) or junk: no address to count
		}
		if j := strings.LastIndex(h, " user="); j >= 0 {
			ev.User = h[j+len(" user="):]
		}
		return resMatched
	case strings.HasSuffix(msg, "POSSIBLE BREAK-IN ATTEMPT!"):
		ev.Kind = KindSSHBreakIn
		// "reverse mapping checking getaddrinfo for <host> [<addr>] failed - POSSIBLE BREAK-IN ATTEMPT!"
		// "Address <addr> maps to <host>, but this does not map back to the address - POSSIBLE BREAK-IN ATTEMPT!"
		if strings.HasPrefix(msg, "Address ") {
			m := msg[len("Address "):]
			sp := strings.IndexByte(m, ' ')
			if sp < 0 || !readAddr(m[:sp], &ev.Src) {
				return resMalformed
			}
			return resMatched
		}
		i := strings.LastIndex(msg, " [")
		j := strings.LastIndex(msg, "] failed")
		if i < 0 || j < i || !readAddr(msg[i+2:j], &ev.Src) {
			return resMalformed
		}
		return resMatched
	}
	return resIgnored
}

// sshFrom reads "<user> from <addr>[ port <n>[ ...]]" where u starts at
// the user name and msg is the whole message; the last " from " is the one
// sshd wrote.
func sshFrom(msg, u string, ev *Event) parseResult {
	i := strings.LastIndex(u, " from ")
	if i < 0 {
		return resMalformed
	}
	ev.User = u[:i]
	tail := u[i+len(" from "):]
	end := strings.IndexByte(tail, ' ')
	if end < 0 {
		end = len(tail)
	}
	if !readAddr(tail[:end], &ev.Src) {
		return resMalformed
	}
	tail = tail[end:]
	if tail != "" {
		// " port <n>", then optionally " ssh2" and more.
		if !strings.HasPrefix(tail, " port ") {
			return resMalformed
		}
		p, ok := parsePort(tail[len(" port "):])
		if !ok {
			return resMalformed
		}
		ev.Port = p
	}
	return resMatched
}

// sshUserAddrPort reads "[authenticating user |invalid user |user ]<user> <addr> port <n>"
// or "<addr> port <n>". The user name comes first and may contain
// anything, so the address is the word before the last " port ".
func sshUserAddrPort(m string, ev *Event) parseResult {
	i := strings.LastIndex(m, " port ")
	if i < 0 {
		return resMalformed
	}
	p, ok := parsePort(m[i+len(" port "):])
	if !ok {
		return resMalformed
	}
	head := m[:i]
	sp := strings.LastIndexByte(head, ' ')
	if !readAddr(head[sp+1:], &ev.Src) {
		return resMalformed
	}
	ev.Port = p
	if sp > 0 {
		u := head[:sp]
		for _, pre := range [...]string{"authenticating user ", "invalid user ", "user "} {
			if strings.HasPrefix(u, pre) {
				ev.User = u[len(pre):]
				break
			}
		}
	}
	return resMatched
}

// readAddr parses an address, dropping a zone and unmapping IPv4-in-IPv6.
func readAddr(s string, out *netip.Addr) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	if a.Zone() != "" {
		a = a.WithZone("")
	}
	*out = a.Unmap()
	return true
}

// parseFirewall reads a kernel firewall log line: "[ 12.34] <prefix> IN=..
// OUT=.. SRC=<addr> DST=<addr> ... PROTO=TCP SPT=<n> DPT=<n> ...".
func parseFirewall(msg string, ev *Event) parseResult {
	in := strings.Index(msg, "IN=")
	if in < 0 || (in > 0 && msg[in-1] != ' ') {
		return resIgnored
	}
	tag := msg[:in]
	if len(tag) > 0 && tag[0] == '[' { // the kernel's uptime stamp
		if j := strings.IndexByte(tag, ']'); j >= 0 {
			tag = tag[j+1:]
		}
	}
	ev.Kind = KindFirewall
	ev.Tag = strings.TrimSpace(tag)
	rest := msg[in:]
	src, ok := kv(rest, " SRC=")
	if !ok || !readAddr(src, &ev.Src) {
		return resMalformed
	}
	if dst, ok := kv(rest, " DST="); ok && !readAddr(dst, &ev.Dst) {
		return resMalformed
	}
	ev.Proto, _ = kv(rest, " PROTO=")
	if s, ok := kv(rest, " SPT="); ok {
		if ev.Port, ok = parsePort(s); !ok {
			return resMalformed
		}
	}
	if s, ok := kv(rest, " DPT="); ok {
		if ev.DstPort, ok = parsePort(s); !ok {
			return resMalformed
		}
	}
	return resMatched
}

// kv returns the value after key (" KEY=") up to the next space.
func kv(s, key string) (string, bool) {
	i := strings.Index(s, key)
	if i < 0 {
		return "", false
	}
	v := s[i+len(key):]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v, true
}

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
	if sp <= 0 || !readAddr(s[:sp], &ev.Src) {
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
	ev.Stamp, ev.web = rest[:rb], true
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
			t = t[:qm]
		}
		ev.Path = t
	}
	if len(rest) < 4 || rest[0] != ' ' || !isDigit(rest[1]) || !isDigit(rest[2]) || !isDigit(rest[3]) || (len(rest) > 4 && rest[4] != ' ') {
		return resMalformed
	}
	ev.Status = int(rest[1]-'0')*100 + int(rest[2]-'0')*10 + int(rest[3]-'0')
	ev.Kind = KindHTTPRequest
	return resMatched
}

// parsePort reads the decimal port at the start of s, which must end
// there or at a space.
func parsePort(s string) (uint16, bool) { return parsePortEnd(s, ' ') }

// parsePortEnd reads the decimal port at the start of s, which must end
// there or at the byte end.
func parsePortEnd(s string, end byte) (uint16, bool) {
	n, i := 0, 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		n = n*10 + int(s[i]-'0')
		if n > 65535 {
			return 0, false
		}
	}
	if i == 0 || (i < len(s) && s[i] != end) {
		return 0, false
	}
	return uint16(n), true
}

// parseStamp turns a raw syslog timestamp into a time. A classic stamp
// has no year and no zone: it is read in now's location, in now's year,
// or in the previous year if that would put it more than a day ahead of
// now (a December line read in January), or in the next year if that
// still puts it less than a day ahead (a January line read on New Year's
// Eve).
func parseStamp(stamp string, now time.Time) (time.Time, bool) {
	if stamp == "" {
		return time.Time{}, false
	}
	if len(stamp) != 15 || stamp[3] != ' ' { // RFC 3339
		t, err := time.Parse(time.RFC3339Nano, stamp)
		return t, err == nil
	}
	mon := month(stamp[:3])
	if mon == 0 {
		return time.Time{}, false
	}
	day, ok1 := twoDigits(stamp[4], stamp[5])
	h, ok2 := twoDigits(stamp[7], stamp[8])
	m, ok3 := twoDigits(stamp[10], stamp[11])
	s, ok4 := twoDigits(stamp[13], stamp[14])
	if !ok1 || !ok2 || !ok3 || !ok4 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60 {
		return time.Time{}, false
	}
	loc := now.Location()
	year := now.In(loc).Year()
	t := time.Date(year, mon, day, h, m, s, 0, loc)
	ahead := now.Add(24 * time.Hour)
	if t.After(ahead) {
		t = time.Date(year-1, mon, day, h, m, s, 0, loc)
	} else if next := time.Date(year+1, mon, day, h, m, s, 0, loc); !next.After(ahead) {
		t = next // a January line from a sender whose clock is ahead of ours at New Year
	}
	if t.Day() != day { // e.g. Feb 30, normalised by time.Date
		return time.Time{}, false
	}
	return t, true
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

// twoDigits reads a two-digit number; the first may be a space ("_2").
func twoDigits(a, b byte) (int, bool) {
	if !isDigit(b) {
		return 0, false
	}
	switch {
	case a == ' ':
		return int(b - '0'), true
	case isDigit(a):
		return int(a-'0')*10 + int(b-'0'), true
	}
	return 0, false
}

func month(s string) time.Month {
	switch s {
	case "Jan":
		return time.January
	case "Feb":
		return time.February
	case "Mar":
		return time.March
	case "Apr":
		return time.April
	case "May":
		return time.May
	case "Jun":
		return time.June
	case "Jul":
		return time.July
	case "Aug":
		return time.August
	case "Sep":
		return time.September
	case "Oct":
		return time.October
	case "Nov":
		return time.November
	case "Dec":
		return time.December
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
