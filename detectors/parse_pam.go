package detectors

// PAM: authentication failures of any service (pam_unix and the modules
// that write its message: pam_ldap, pam_sss, pam_winbind), in both tag
// forms, and sudo and su failures.

import "strings"

// parsePAM reads a PAM module's failure message, whatever the program:
//
//	pam_unix(<service>:auth): authentication failure; logname=<l> uid=<n> euid=<n> tty=<t> ruser=<u> rhost=<host>[  user=<user>]
//
// rhost is an address or a host name (sshd with UseDNS, rlogin, FTP);
// an empty rhost is a local failure (sudo, su, login on a console).
// Only the user name, last, is the client's: the first " rhost=" is the
// module's, and the user name is all that follows it.
func parsePAM(msg string, ev *Event) parseResult {
	m := strings.TrimPrefix(msg, "pam_")
	if len(m) == len(msg) {
		return resIgnored
	}
	op := strings.IndexByte(m, '(')
	if op < 1 || op > 16 {
		return resIgnored
	}
	cl := strings.IndexByte(m[op:], ')')
	if cl < 0 || cl > 64 || op+cl+2 >= len(m) || m[op+cl+1] != ':' || m[op+cl+2] != ' ' {
		return resIgnored
	}
	svc := m[op+1 : op+cl]
	m = m[op+cl+len("): "):]
	if !strings.HasPrefix(m, "authentication failure; ") {
		return resIgnored
	}
	if c := strings.IndexByte(svc, ':'); c >= 0 {
		svc = svc[:c]
	}
	return pamFailure(svc, m[len("authentication failure; "):], ev)
}

// parsePAMOld reads the message of older pam_unix, whose tag names the
// service: "sshd(pam_unix)[pid]: authentication failure; logname= ...".
func parsePAMOld(svc, msg string, ev *Event) parseResult {
	m, ok := strings.CutPrefix(msg, "authentication failure; ")
	if !ok {
		return resIgnored
	}
	return pamFailure(svc, m, ev)
}

// pamFailure reads "logname=... rhost=<host>[  user=<user>]" of service
// svc.
func pamFailure(svc, m string, ev *Event) parseResult {
	ev.Kind = KindPAMFailure
	if svc == "sshd" {
		ev.Kind = KindSSHPAMFailure
	}
	ev.Method = svc
	i := strings.Index(m, " rhost=")
	if i < 0 {
		if strings.HasPrefix(m, "rhost=") {
			i = -1
		} else {
			return resMalformed
		}
	}
	h := m[i+len(" rhost="):]
	end := strings.IndexByte(h, ' ')
	if end < 0 {
		end = len(h)
	}
	host := h[:end]
	switch h = h[end:]; {
	case strings.HasPrefix(h, "  user="):
		ev.User = h[len("  user="):]
	case strings.HasPrefix(h, " user="):
		ev.User = h[len(" user="):]
	case h != "" && strings.TrimLeft(h, " ") != "":
		return resMalformed
	}
	if host == "" {
		ev.Kind = KindLocalAuthFailure
		return resLocal
	}
	return readSource(host, ev)
}

// readSource reads a remote party written as an address or as a host
// name (a reverse lookup the daemon made). A host name becomes the
// event's Host; one that names no remote party ("localhost", a name
// without a domain, a local domain) makes the line local.
func readSource(s string, ev *Event) parseResult {
	if tryAddr(s, &ev.Src) {
		return resMatched
	}
	switch hostName(s) {
	case hostRemote:
		ev.Host = s
		return resMatched
	case hostLocal:
		return resLocal
	}
	return resMalformed
}

type hostClass uint8

const (
	hostBad hostClass = iota
	hostLocal
	hostRemote
)

// hostName classifies s as a DNS host name: letters, digits, '-' and '_'
// in labels of 1 to 63 bytes, at most 253 bytes. A name without a dot or
// in a local domain (.localdomain, .localhost, .local, .internal, .lan,
// .home.arpa) names no remote party.
func hostName(s string) hostClass {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return hostBad
	}
	label, dots, digitsOnly := 0, 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return hostBad
			}
			label = 0
			dots++
			digitsOnly = true
			continue
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_':
			digitsOnly = false
		case isDigit(c):
		default:
			return hostBad
		}
		if label++; label > 63 {
			return hostBad
		}
	}
	if label == 0 || digitsOnly {
		return hostBad // "1.2.3" or an address cut short: not a name
	}
	if dots == 0 {
		return hostLocal
	}
	for _, suf := range [...]string{".localdomain", ".localhost", ".local", ".internal", ".lan", ".home.arpa"} {
		if len(s) > len(suf) && strings.EqualFold(s[len(s)-len(suf):], suf) {
			return hostLocal
		}
	}
	return hostRemote
}

// parseSudo reads sudo's failures, which are local:
//
//	<user> : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/u ; USER=root ; COMMAND=/bin/sh
//	<user> : user NOT in sudoers ; TTY=...
//	pam_unix(sudo:auth): authentication failure; ... rhost=  user=<user>
func parseSudo(msg string, ev *Event) parseResult {
	if strings.HasPrefix(msg, "pam_") {
		return parsePAM(msg, ev)
	}
	m := strings.TrimLeft(msg, " ")
	i := strings.IndexByte(m, ':')
	if i <= 0 || m[i-1] != ' ' || i+2 > len(m) {
		return resIgnored
	}
	r := m[i+1:]
	if len(r) < 2 || r[0] != ' ' || !isDigit(r[1]) && r[1] != 'u' {
		return resIgnored // "<user> : TTY=... ; COMMAND=...", the command that ran
	}
	i--
	r = r[1:]
	switch {
	case isDigit(r[0]) && strings.Contains(r[:min(len(r), 40)], "incorrect password attempt"),
		strings.HasPrefix(r, "user NOT in sudoers"),
		strings.HasPrefix(r, "user NOT authorized on host"):
	default:
		return resIgnored
	}
	ev.Kind, ev.User = KindLocalAuthFailure, m[:i]
	return resLocal
}

// parseSu reads su's failures, which are local:
//
//	FAILED SU (to <user>) <by> on <tty>
//	FAILED su for <user> by <by>
//	pam_authenticate: Authentication failure
//	pam_unix(su:auth): authentication failure; ... rhost=  user=<user>
func parseSu(msg string, ev *Event) parseResult {
	switch {
	case strings.HasPrefix(msg, "pam_unix("), strings.HasPrefix(msg, "pam_sss("):
		return parsePAM(msg, ev)
	case strings.HasPrefix(msg, "FAILED SU (to "):
		u := msg[len("FAILED SU (to "):]
		if j := strings.IndexByte(u, ')'); j >= 0 {
			ev.User = u[:j]
		}
	case strings.HasPrefix(msg, "FAILED su for "):
		u := msg[len("FAILED su for "):]
		if j := strings.Index(u, " by "); j >= 0 {
			u = u[:j]
		}
		ev.User = u
	case msg == "pam_authenticate: Authentication failure":
	default:
		return resIgnored
	}
	ev.Kind = KindLocalAuthFailure
	return resLocal
}
