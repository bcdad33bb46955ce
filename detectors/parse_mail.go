package detectors

// Mail: failed SMTP and IMAP/POP3 logins of Postfix (SASL), Dovecot and
// Exim.

import "strings"

// parsePostfix reads Postfix smtpd's SASL failure:
//
//	warning: <name>[<addr>]: SASL <mech> authentication failed: <reason>[, sasl_username=<user>]
//
// The name is Postfix's reverse lookup ("unknown" without one); the
// reason and the user name are the client's.
func parsePostfix(msg string, ev *Event) parseResult {
	m, ok := strings.CutPrefix(msg, "warning: ")
	if !ok {
		return parsePostfixReject(msg, ev)
	}
	i := strings.Index(m, "]: SASL ")
	if i < 0 || i > 320 {
		return resIgnored
	}
	rest := m[i+len("]: SASL "):]
	sp := strings.IndexByte(rest, ' ')
	if sp <= 0 || !strings.HasPrefix(rest[sp:], " authentication failed") {
		return resIgnored
	}
	ev.Kind, ev.Method = KindMailAuthFailure, rest[:sp]
	lb := strings.LastIndexByte(m[:i], '[')
	if lb < 0 || !readAddr(m[lb+1:i], &ev.Src) {
		return resMalformed
	}
	if j := strings.LastIndex(rest, ", sasl_username="); j >= 0 {
		ev.User = rest[j+len(", sasl_username="):]
	}
	return resMatched
}

// parsePostfixReject reads Postfix smtpd's refusal to relay:
//
//	NOQUEUE: reject: RCPT from <name>[<addr>]: 554 5.7.1 <rcpt>: Relay access denied; from=<sender> to=<rcpt> proto=ESMTP helo=<helo>
//
// The name is Postfix's reverse lookup, checked as a host name; what
// follows "]: " is the client's.
func parsePostfixReject(msg string, ev *Event) parseResult {
	m, ok := strings.CutPrefix(msg, "NOQUEUE: reject: RCPT from ")
	if !ok {
		return resIgnored
	}
	i := strings.Index(m, "]: ")
	if i < 0 {
		return resMalformed
	}
	r := m[i+len("]: "):]
	j := strings.Index(r, ": Relay access denied")
	if j < 0 || j > 512 {
		return resIgnored // another restriction: not a relay probe
	}
	ev.Kind = KindMailRelayDenied
	lb := strings.LastIndexByte(m[:i], '[')
	if lb < 0 || !readAddr(m[lb+1:i], &ev.Src) {
		return resMalformed
	}
	return resMatched
}

// parseDovecot reads Dovecot's failed logins, from its login processes
// and from its authentication process:
//
//	imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u>, method=PLAIN, rip=<addr>, lip=<addr>, TLS, session=<s>
//	pop3-login: Aborted login (auth failed, 3 attempts in 12 secs): user=<u>, method=PLAIN, rip=<addr>, ...
//	imap-login: Login aborted: Connection closed (auth failed, 3 attempts in 15 secs) (auth_failed): user=<u>, ..., rip=<addr>, ...
//	auth: passwd-file(<user>,<addr>[,<session>]): Password mismatch
//	auth-worker(<pid>): pam(<user>,<addr>[,<session>]): pam_authenticate() failed: Authentication failure
//
// The user name comes before the address and is the client's, so the
// address is found from the end. The authentication process's lines
// (auth_verbose) repeat a login process's failure: their method is
// "passdb", so that a rule can count each failure once.
func parseDovecot(msg string, ev *Event) parseResult {
	m := msg
	// "imap-login: ", "auth: ", "auth-worker(123): " when the tag is dovecot
	if i := strings.Index(m[:min(len(m), 32)], ": "); i > 0 {
		switch p := m[:i]; {
		case strings.HasSuffix(p, "-login"), p == "auth", strings.HasPrefix(p, "auth-worker("):
			m = m[i+2:]
		}
	}
	// Dovecot's own log file writes the level ("Info: ").
	for _, lvl := range [...]string{"Info: ", "Error: ", "Warning: "} {
		if strings.HasPrefix(m, lvl) {
			m = m[len(lvl):]
			break
		}
	}
	if strings.HasPrefix(m, "pam_") {
		return parsePAM(m, ev)
	}
	if strings.Contains(m[:min(len(m), 96)], "(auth failed, ") {
		ev.Kind = KindMailAuthFailure
		i := strings.LastIndex(m, ", rip=")
		if i < 0 {
			return resMalformed
		}
		a := m[i+len(", rip="):]
		if j := strings.IndexByte(a, ','); j >= 0 {
			a = a[:j]
		}
		if !readAddr(a, &ev.Src) {
			return resMalformed
		}
		head := m[:i]
		if u := strings.Index(head, "user=<"); u >= 0 {
			if e := strings.LastIndex(head, ">, method="); e > u {
				ev.User = head[u+len("user=<") : e]
				mm := head[e+len(">, method="):]
				if j := strings.IndexByte(mm, ','); j >= 0 {
					mm = mm[:j]
				}
				ev.Method = mm
			}
		}
		return resMatched
	}
	// "<passdb>(<user>,<addr>[,<session>]): <reason>"
	i := strings.LastIndex(m, "): ")
	if i < 0 {
		return resIgnored
	}
	switch r := m[i+len("): "):]; {
	case r == "Password mismatch", r == "unknown user", strings.HasPrefix(r, "Password mismatch "),
		strings.HasPrefix(r, "pam_authenticate() failed: Authentication failure"),
		strings.HasPrefix(r, "pam_authenticate() failed: User not known"):
	default:
		return resIgnored
	}
	op := strings.IndexByte(m, '(')
	if op <= 0 || op > i {
		return resIgnored
	}
	ev.Kind, ev.Method = KindMailAuthFailure, "passdb"
	in := m[op+1 : i]
	if j := strings.LastIndexByte(in, ','); j >= 0 && strings.HasPrefix(in[j+1:], "<") && strings.HasSuffix(in, ">") {
		in = in[:j] // the session id
	}
	j := strings.LastIndexByte(in, ',')
	if j < 0 || !readAddr(in[j+1:], &ev.Src) {
		return resMalformed
	}
	ev.User = in[:j]
	return resMatched
}

// parseExim reads an Exim authenticator's failure, from its main log
// (after the date) or from syslog:
//
//	[[<pid>] ]<driver> authenticator failed for [<name> ][(<helo>) ][<addr>]:<port>[ I=[<addr>]:<port>]: 535 Incorrect authentication data[ (set_id=<user>)]
//
// The HELO name and the set_id are the client's and may hold anything, so
// every place the address may be is a candidate: each ": 535 " preceded
// by "[<addr>]" with the port and interface Exim writes after it. A line
// with two candidates is malformed.
func parseExim(msg string, ev *Event) parseResult {
	i := strings.Index(msg[:min(len(msg), 96)], " authenticator failed for ")
	if i < 0 {
		return resIgnored
	}
	ev.Kind = KindMailAuthFailure
	drv := msg[:i]
	if j := strings.LastIndexByte(drv, ' '); j >= 0 {
		drv = drv[j+1:]
	}
	ev.Method = drv
	rest := msg[i+len(" authenticator failed for "):]
	n := 0
	var found Event
	var tail string
	for k := 0; n < 2; {
		j := strings.Index(rest[k:], ": 535 ")
		if j < 0 {
			break
		}
		j += k
		var try Event
		if eximAddr(rest[:j], &try) {
			n++
			found, tail = try, rest[j+len(": 535 "):]
		}
		k = j + 1
	}
	if n != 1 {
		return resMalformed
	}
	ev.Src = found.Src
	if j := strings.LastIndex(tail, "(set_id="); j >= 0 && strings.HasSuffix(tail, ")") {
		ev.User = tail[j+len("(set_id=") : len(tail)-1]
	}
	return resMatched
}

// eximAddr reads the end of Exim's host description: "[<addr>]",
// optionally followed by ":<port>" and " I=[<addr>]:<port>".
func eximAddr(s string, ev *Event) bool {
	if i := strings.LastIndex(s, " I=["); i >= 0 {
		s = s[:i]
	}
	if j := strings.LastIndexByte(s, ']'); j >= 0 && j < len(s)-1 {
		if s[j+1] != ':' {
			return false
		}
		if _, ok := parsePort(s[j+2:]); !ok {
			return false
		}
		s = s[:j+1]
	}
	if !strings.HasSuffix(s, "]") {
		return false
	}
	lb := strings.LastIndexByte(s, '[')
	if lb < 0 || lb > 0 && s[lb-1] != ' ' && s[lb-1] != '(' {
		return false
	}
	return readAddr(s[lb+1:len(s)-1], &ev.Src)
}
