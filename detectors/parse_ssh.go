package detectors

// OpenSSH: failed logins and hostile connections.

import "strings"

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
		return sshAuthLog(u, ev.Method, ev)
	case strings.HasPrefix(msg, "Invalid user "):
		// "Invalid user <user> from <addr> port <n>"
		ev.Kind = KindSSHInvalidUser
		return sshFrom(msg[len("Invalid user "):], ev)
	case strings.HasPrefix(msg, "error: maximum authentication attempts exceeded for "):
		// "... for [invalid user ]<user> from <addr> port <n> ssh2"
		ev.Kind = KindSSHMaxAuth
		u := msg[len("error: maximum authentication attempts exceeded for "):]
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
		// Only the user name, last, is the client's: the first rhost= is
		// pam_unix's, and the user name is all that follows it.
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
		switch h = h[end:]; {
		case strings.HasPrefix(h, "  user="):
			ev.User = h[len("  user="):]
		case h != "" && h != " ":
			return resMalformed
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
