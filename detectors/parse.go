package detectors

import (
	"net/netip"
	"strings"
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
	// resLocal: a failure that names no remote party (sudo, su, a local
	// login): counted, never attributed.
	resLocal
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
//
// Syslog lines are dispatched on their program tag, so that a family
// costs the lines of other programs one comparison. Lines that are not
// syslog lines are dispatched on their first byte: a JSON object, a web
// access log (it starts with the client address), a bracketed stamp
// (Apache's error log), a date (nginx's error log, Exim, MySQL,
// PostgreSQL) or a weekday (vsftpd's own log).
func parseLine(line string, ev *Event) parseResult {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	stamp, rest := splitSyslog(line)
	if stamp == "" && len(rest) > 0 {
		switch c := rest[0]; {
		case c == '{':
			return parseJSON(rest, ev)
		case c == '[':
			if res := parseApacheError(rest, ev); res != resIgnored {
				return res
			}
		case isHex(c) || c == ':':
			// A web access log line starts with the client address.
			if res := parseWeb(rest, ev); res != resIgnored {
				return res
			}
			if isDigit(c) {
				if res := parseDated(rest, ev); res != resIgnored {
					return res
				}
			}
		case c >= 'A' && c <= 'Z':
			if res := parseVsftpdLog(rest, ev); res != resIgnored {
				return res
			}
		}
	}
	prog, msg, ok := syslogMessage(rest, stamp != "")
	if !ok {
		if stamp != "" && stamp[0] != '<' && isDigit(stamp[0]) {
			// An RFC 3339 stamp and no syslog tag: MySQL 8's error log.
			if res := parseMySQL(rest, ev); res == resMatched {
				ev.Stamp = stamp
				return res
			} else if res != resIgnored {
				return res
			}
		}
		return resIgnored
	}
	var res parseResult
	switch {
	case len(msg) > 4 && msg[0] == 'p' && msg[1] == 'a' && msg[2] == 'm' && msg[3] == '_':
		// A PAM module's message, whatever the program.
		res = parsePAM(msg, ev)
		if res == resIgnored && prog == "su" {
			res = parseSu(msg, ev) // "pam_authenticate: Authentication failure"
		}
	case len(msg) > 11 && msg[0] == '(' && strings.HasPrefix(msg, "(pam_unix) "):
		// Older pam_unix without the module in the tag:
		// "pure-ftpd: (pam_unix) authentication failure; ..."
		res = parsePAMOld(prog, msg[len("(pam_unix) "):], ev)
	default:
		res = parseProgram(prog, msg, ev)
	}
	if res == resMatched || res == resLocal {
		if ev.Program == "" {
			ev.Program = strings.TrimSuffix(prog, "(pam_unix)")
		}
		if ev.Stamp == "" {
			ev.Stamp = stamp
		}
	}
	return res
}

// parseProgram dispatches a syslog message on its program tag.
func parseProgram(prog, msg string, ev *Event) parseResult {
	if prog == "sshd" { // most of an auth.log
		return parseSSHMessage(msg, ev)
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
		if res == resIgnored && prog == "nginx" {
			// nginx's error log sent to syslog, with or without its stamp
			if res = parseNginxErrorMsg(msg, ev); res == resIgnored {
				res = parseNginxError(msg, ev)
			}
		}
	case "sudo":
		res = parseSudo(msg, ev)
	case "su":
		res = parseSu(msg, ev)
	case "dovecot", "imap-login", "pop3-login", "auth", "auth-worker":
		res = parseDovecot(msg, ev)
	case "exim", "exim4":
		res = parseExim(msg, ev)
	case "vsftpd":
		res = parseVsftpd(msg, ev)
	case "proftpd":
		res = parseProftpd(msg, ev)
	case "pure-ftpd":
		res = parsePureFTPd(msg, ev)
	case "mysqld", "mariadbd", "mysqld_safe", "mariadb":
		res = parseMySQL(msg, ev)
	case "postgres", "postgresql":
		res = parsePostgres(msg, ev)
	case "openvpn", "ovpn-server", "ovpn-client":
		res = parseOpenVPN(msg, ev)
	default:
		switch c := prog[0]; {
		case c != 'p' && c != 'o' && prog[len(prog)-1] != ')':
			// another program (systemd, CRON): one look
		case strings.HasPrefix(prog, "postfix"):
			res = parsePostfix(msg, ev)
		case strings.HasPrefix(prog, "ovpn-") || strings.HasPrefix(prog, "openvpn"):
			res = parseOpenVPN(msg, ev)
		case strings.HasSuffix(prog, "(pam_unix)"):
			// The tag of older pam_unix: "sshd(pam_unix)[pid]: ..."
			res = parsePAMOld(prog[:len(prog)-len("(pam_unix)")], msg, ev)
		}
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
	if s[i] == '(' {
		// "sshd(pam_unix)[pid]: ": the tag of older pam_unix
		if j := strings.IndexByte(s[i:min(len(s), i+24)], ')'); j > 1 {
			i += j + 1
		}
		if i == len(s) {
			return "", "", false
		}
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

// tryAddr is readAddr for a word that is often not an address: its shape
// is checked first, since netip.ParseAddr allocates the error it returns.
func tryAddr(s string, out *netip.Addr) bool {
	return addrBytes(s) && readAddr(s, out)
}

// addrBytes reports whether s has the shape of an address (up to a zone,
// "%eth0"): hex digits with three dots (IPv4), or colons and dots with
// "::" or enough groups (IPv6). The parsers try words that are often not
// addresses (a date, a time, a user@database), and netip.ParseAddr
// allocates the error it returns for them.
func addrBytes(s string) bool {
	dots, colons, double := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			dots++
		case c == ':':
			colons++
			if i > 0 && s[i-1] == ':' {
				double = true
			}
		case c == '%':
			i = len(s)
		case !isHex(c):
			return false
		}
	}
	switch {
	case colons == 0:
		return dots == 3 && ipv4Groups(s)
	case dots == 0:
		return double || colons == 7
	}
	return dots == 3 && (double || colons == 6)
}

// ipv4Groups reports whether the dotted groups of s are decimal numbers
// up to 255.
func ipv4Groups(s string) bool {
	n, digits := 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' || s[i] == '%' {
			if digits == 0 || n > 255 {
				return false
			}
			if i < len(s) && s[i] == '%' {
				return true
			}
			n, digits = 0, 0
			continue
		}
		if !isDigit(s[i]) || digits == 3 {
			return false
		}
		n = n*10 + int(s[i]-'0')
		digits++
	}
	return true
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

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
