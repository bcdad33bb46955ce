package detectors

// OpenSSH: failed logins and hostile connections.

import "strings"

// parseSSHMessage recognises the OpenSSH messages of a failed or hostile
// connection. User names are chosen by the attacker and may contain
// " from <addr> port <n>": the address sshd writes after a user name is
// found from the end of the message, never from the start.
func parseSSHMessage(msg string, ev *Event) parseResult {
	if msg == "" || !sshFirst[msg[0]] || msg[0] == 'A' && msg[1%len(msg)] == 'c' {
		// Not a message this parser reads ("Accepted ...", "Server
		// listening ...", "Starting session ..."): one lookup.
		return resIgnored
	}
	m, preauth := strings.CutSuffix(msg, " [preauth]")
	if len(m) > 7 && m[5] == ':' && m[6] == ' ' && (strings.HasPrefix(m, "error") || strings.HasPrefix(m, "fatal")) {
		m = m[len("error: "):]
	}
	msg = m
	switch {
	case strings.HasPrefix(msg, "Failed "):
		// "Failed <method> for [invalid user ]<user> from <addr> port <n> ssh2[: <key>]"
		// (OpenSSH before 3.9 wrote "illegal user")
		m := msg[len("Failed "):]
		sp := strings.IndexByte(m, ' ')
		if sp <= 0 || !strings.HasPrefix(m[sp:], " for ") {
			return resIgnored
		}
		ev.Kind, ev.Method = KindSSHFailed, m[:sp]
		u := m[sp+len(" for "):]
		if strings.HasPrefix(u, "invalid user ") || strings.HasPrefix(u, "illegal user ") {
			ev.invalid = true
			u = u[len("invalid user "):]
		}
		return sshAuthLog(u, ev.Method, ev)
	case strings.HasPrefix(msg, "Invalid user "), strings.HasPrefix(msg, "Illegal user "):
		// "Invalid user <user> from <addr> port <n>"
		ev.Kind = KindSSHInvalidUser
		return sshFrom(msg[len("Invalid user "):], ev)
	case strings.HasPrefix(msg, "maximum authentication attempts exceeded for "):
		// "... for [invalid user ]<user> from <addr> port <n> ssh2"
		ev.Kind = KindSSHMaxAuth
		u := msg[len("maximum authentication attempts exceeded for "):]
		u = strings.TrimPrefix(u, "invalid user ")
		return sshFromSSH2(u, ev)
	case strings.HasPrefix(msg, "Disconnecting "):
		// "Disconnecting [authenticating|invalid] user <user> <addr> port <n>: Too many authentication failures"
		i := strings.LastIndex(msg, ": Too many authentication failures")
		if i < 0 {
			return resIgnored
		}
		ev.Kind = KindSSHMaxAuth
		return sshUserAddrPort(msg[len("Disconnecting "):i], ev)
	case strings.HasPrefix(msg, "PAM: Authentication failure for "),
		strings.HasPrefix(msg, "PAM: User not known to the underlying authentication module for "):
		// "PAM: Authentication failure for [illegal user ]<user> from <host>" (OpenSSH 3.x)
		ev.Kind, ev.Method = KindSSHFailed, "pam"
		u := msg[strings.Index(msg, " for ")+len(" for "):]
		if strings.HasPrefix(u, "illegal user ") || strings.HasPrefix(u, "invalid user ") {
			u = u[len("illegal user "):]
		}
		i := strings.LastIndex(u, " from ")
		if i < 0 {
			return resMalformed
		}
		ev.User = u[:i]
		h := u[i+len(" from "):]
		if j := strings.Index(h, " via "); j >= 0 {
			h = h[:j]
		}
		return readSource(h, ev)
	case strings.HasPrefix(msg, "User ") && strings.Contains(msg, " not allowed because "):
		// "User <user> from <host> not allowed because not listed in AllowUsers"
		// (and listed in DenyUsers, not in any group, a group is listed in
		// DenyGroups, none of user's groups are listed in AllowGroups)
		ev.Kind = KindSSHNotAllowed
		m := msg[len("User "):]
		j := strings.LastIndex(m, " not allowed because ")
		if j < 0 {
			return resMalformed
		}
		m = m[:j]
		i := strings.LastIndex(m, " from ")
		if i < 0 {
			return resMalformed
		}
		ev.User = m[:i]
		return readSource(m[i+len(" from "):], ev)
	case strings.HasPrefix(msg, "ROOT LOGIN REFUSED FROM "):
		// "ROOT LOGIN REFUSED FROM <host>[ port <n>]"
		ev.Kind, ev.User = KindSSHNotAllowed, "root"
		return sshHostPort(msg[len("ROOT LOGIN REFUSED FROM "):], ev)
	case strings.HasPrefix(msg, "refused connect from "):
		// TCP wrappers: "refused connect from <name> (<addr>)"
		ev.Kind = KindSSHNotAllowed
		m := msg[len("refused connect from "):]
		i := strings.LastIndex(m, " (")
		if i < 0 || !strings.HasSuffix(m, ")") {
			return resMalformed
		}
		return readSource(m[i+2:len(m)-1], ev)
	case strings.HasPrefix(msg, "Did not receive identification string from "):
		ev.Kind = KindSSHKex
		return sshHostPort(msg[len("Did not receive identification string from "):], ev)
	case strings.HasPrefix(msg, "Bad protocol version identification "):
		// "Bad protocol version identification '<client's>' from <addr>[ port <n>]"
		ev.Kind = KindSSHKex
		i := strings.LastIndex(msg, "' from ")
		if i < 0 {
			return resMalformed
		}
		return sshHostPort(msg[i+len("' from "):], ev)
	case strings.HasPrefix(msg, "Unable to negotiate with "):
		// "Unable to negotiate with <addr> port <n>: no matching <what> found. Their offer: <client's>"
		ev.Kind = KindSSHKex
		m := msg[len("Unable to negotiate with "):]
		i := strings.Index(m, ": no matching ")
		if i < 0 {
			return resMalformed
		}
		return sshHostPort(m[:i], ev)
	case strings.HasPrefix(msg, "banner exchange: Connection from "),
		strings.HasPrefix(msg, "ssh_dispatch_run_fatal: Connection from "):
		// "banner exchange: Connection from <addr> port <n>: invalid format"
		// "ssh_dispatch_run_fatal: Connection from [authenticating user <u> ]<addr> port <n>: message authentication code incorrect"
		ev.Kind = KindSSHKex
		m := msg[strings.Index(msg, "Connection from ")+len("Connection from "):]
		i := strings.LastIndex(m, ": ")
		if i < 0 {
			return resMalformed
		}
		return sshUserAddrPort(m[:i], ev)
	case strings.HasPrefix(msg, "Timeout before authentication for "):
		// "Timeout before authentication for <addr> port <n>"
		ev.Kind = KindSSHKex
		return sshHostPort(msg[len("Timeout before authentication for "):], ev)
	case strings.HasPrefix(msg, "Connection reset by "):
		if !preauth {
			return resIgnored // the end of a session
		}
		ev.Kind = KindSSHPreauthReset
		return sshUserAddrPort(msg[len("Connection reset by "):], ev)
	case strings.HasPrefix(msg, "Connection closed by "):
		if !preauth {
			return resIgnored
		}
		ev.Kind = KindSSHPreauthDisconnect
		return sshUserAddrPort(msg[len("Connection closed by "):], ev)
	case strings.HasPrefix(msg, "Disconnected from "):
		if !preauth {
			return resIgnored
		}
		ev.Kind = KindSSHPreauthDisconnect
		return sshUserAddrPort(msg[len("Disconnected from "):], ev)
	case strings.HasPrefix(msg, "Received disconnect from "):
		// "Received disconnect from <addr> port <n>:11: <reason chosen by the client>"
		// "Received disconnect from <addr>: 3: <reason>" (OpenSSH before 7.2)
		if !preauth {
			return resIgnored
		}
		ev.Kind = KindSSHPreauthDisconnect
		m := msg[len("Received disconnect from "):]
		sp := strings.IndexByte(m, ' ')
		if sp > 0 && !strings.HasPrefix(m[sp:], " port ") && m[sp-1] == ':' {
			// no port: "<addr>: <code>: <reason>"
			if !readAddr(m[:sp-1], &ev.Src) {
				return resMalformed
			}
			return resMatched
		}
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

// sshFirst marks the bytes a message parseSSHMessage reads may start
// with.
var sshFirst = func() (t [256]bool) {
	for _, c := range []byte("FIimDPURrBbsTCAef") {
		t[c] = true
	}
	return t
}()

// sshHostPort reads "<addr or host>[ port <n>]", which must end there.
func sshHostPort(m string, ev *Event) parseResult {
	h := m
	if i := strings.Index(m, " port "); i >= 0 {
		p, ok := parsePort(m[i+len(" port "):])
		if !ok || strings.IndexByte(m[i+len(" port "):], ' ') >= 0 {
			return resMalformed
		}
		ev.Port, h = p, m[:i]
	}
	return readSource(h, ev)
}

// sshAuthLog reads the rest of sshd's auth_log message,
//
//	<user> from <addr> port <n> ssh2[: <extra>]
//
// where u starts at the user name. The user name (before the source) and
// the extra (after it: a certificate's key ID, a hostbased client's user
// and host names, a GSSAPI principal) are both chosen by the client, and
// either may contain " from <addr> port <n> ssh2" or ": "; and sshd cuts
// long messages, so the extra may end anywhere. So every place the source
// may be is a candidate: the end of the message and, for a method after
// which sshd writes an extra, every " ssh2: ". A candidate is one where
// what precedes it ends with the source as sshd writes it (sshFromSSH2).
// The source sshd wrote is always a candidate, so a line with two
// candidates is malformed; the one candidate of a line is its source when
// what follows it has the shape sshd writes for the method (sshExtra).
func sshAuthLog(u, method string, ev *Event) parseResult {
	var found Event
	var extra string
	n := 0
	keep := func(head, x string) {
		var try Event
		if sshFromSSH2(head, &try) == resMatched {
			n++
			found, extra = try, x
		}
	}
	keep(u, "")
	for i := 0; n < 2 && sshWritesExtra(method); {
		j := strings.Index(u[i:], " ssh2: ")
		if j < 0 {
			break
		}
		j += i
		keep(u[:j+len(" ssh2")], u[j+len(" ssh2: "):])
		i = j + 1
	}
	if n != 1 || extra != "" && !sshExtra(extra, method) {
		return resMalformed
	}
	ev.User, ev.Src, ev.Port = found.User, found.Src, found.Port
	return resMatched
}

// sshWritesExtra reports whether sshd may write something after "ssh2: "
// for the method: never for password, none and keyboard-interactive.
func sshWritesExtra(method string) bool {
	return method != "password" && method != "none" && method != "keyboard-interactive" &&
		!strings.HasPrefix(method, "keyboard-interactive/")
}

// sshExtra reports whether s has the shape of what sshd writes after
// "ssh2: " for the method: a key description (sshKeyInfo) for publickey
// and hostbased, any text for the others (gssapi-with-mic writes the
// client's principal).
func sshExtra(s, method string) bool {
	if method == "publickey" || method == "hostbased" {
		return sshKeyInfo(s)
	}
	return s != ""
}

// sshKeyInfo reports whether s starts like OpenSSH's key description:
//
//	<TYPE> <fingerprint>[, <info>]
//	<TYPE>-CERT [<fingerprint> ]ID <key id> (serial <n>) CA <TYPE> <fingerprint>[, <info>]
//
// The key ID and the info may hold anything, including the rest of the
// shape, and sshd cuts long messages (syslog at 500 bytes) inside them; so
// a certificate is recognised by what comes before its key ID, and a key
// by its fingerprint and what may follow it.
func sshKeyInfo(s string) bool {
	sp := strings.IndexByte(s, ' ')
	if sp < 0 || !sshKeyType(s[:sp]) {
		return false
	}
	typ, rest := s[:sp], s[sp+1:]
	if !strings.HasSuffix(typ, "-CERT") {
		fp := rest
		if i := strings.IndexByte(rest, ','); i >= 0 {
			if !strings.HasPrefix(rest[i:], ", ") && rest[i:] != "," {
				return false
			}
			fp = rest[:i]
		}
		return sshFingerprint(fp)
	}
	if sp := strings.IndexByte(rest, ' '); sp > 0 && sshFingerprint(rest[:sp]) {
		rest = rest[sp+1:] // OpenSSH before 6.8 wrote no fingerprint of the certified key
	}
	return strings.HasPrefix(rest, "ID ")
}

// sshKeyType reports whether s looks like an OpenSSH key type name
// ("RSA", "ED25519-SK", "ECDSA-CERT").
func sshKeyType(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || isDigit(c) || c == '-') {
			return false
		}
	}
	return true
}

// sshFingerprint reports whether s looks like an OpenSSH key fingerprint:
// "SHA256:<base64>", "MD5:<hex>:<hex>..." (the other hash names alike),
// the bare colon-separated hex of old versions, or "(null)".
func sshFingerprint(s string) bool {
	if s == "(null)" {
		return true
	}
	alg, val, ok := strings.Cut(s, ":")
	switch alg {
	case "MD5", "SHA1", "SHA256", "SHA384", "SHA512":
	default:
		if len(alg) != 2 || !isHex(alg[0]) || !isHex(alg[1]) {
			return false
		}
		val = s
	}
	if !ok || val == "" || len(val) > 128 {
		return false
	}
	for i := 0; i < len(val); i++ {
		if c := val[i]; !(isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '+' || c == '/' || c == '=' || c == ':') {
			return false
		}
	}
	return true
}

// sshFrom reads "<user> from <addr>[ port <n>]", which must end there:
// the source as sshd writes it after a user name in "Invalid user" (whose
// port sshd before 7.5 did not write). The user name may contain anything,
// " from " included, so the source is found from the end.
func sshFrom(u string, ev *Event) parseResult {
	return sshFromEnd(u, false, ev)
}

// sshFromSSH2 reads "<user> from <addr> port <n> ssh2", which must end
// there: the source as sshd's auth_log and maximum-attempts messages
// write it.
func sshFromSSH2(u string, ev *Event) parseResult {
	return sshFromEnd(u, true, ev)
}

func sshFromEnd(u string, ssh2 bool, ev *Event) parseResult {
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
	if tail == "" && !ssh2 {
		return resMatched
	}
	if !strings.HasPrefix(tail, " port ") {
		return resMalformed
	}
	tail = tail[len(" port "):]
	p, ok := parsePort(tail)
	if !ok {
		return resMalformed
	}
	sp := strings.IndexByte(tail, ' ')
	if ssh2 && (sp < 0 || tail[sp:] != " ssh2") || !ssh2 && sp >= 0 {
		return resMalformed
	}
	ev.Port = p
	return resMatched
}

// sshUserAddrPort reads "[authenticating user |invalid user |user ]<user> <addr> port <n>"
// or "<addr> port <n>"; OpenSSH before 7.x wrote no port. The user name comes first and may contain
// anything, so the address is the word before the last " port ".
func sshUserAddrPort(m string, ev *Event) parseResult {
	var p uint16
	head := m
	if i := strings.LastIndex(m, " port "); i >= 0 {
		var ok bool
		if p, ok = parsePort(m[i+len(" port "):]); !ok {
			return resMalformed
		}
		head = m[:i]
	}
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
