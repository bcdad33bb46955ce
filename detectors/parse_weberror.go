package detectors

// Web server error logs: failed HTTP basic authentication (nginx, Apache)
// and nginx limit_req refusals.

import "strings"

// parseNginxError reads a line of nginx's error log:
//
//	2024/11/28 12:00:01 [error] 1234#1234: *5 <message>, client: <addr>, server: ...
func parseNginxError(line string, ev *Event) parseResult {
	if len(line) < 21 || line[4] != '/' || line[19] != ' ' || line[20] != '[' {
		return resIgnored
	}
	res := parseNginxErrorMsg(line[20:], ev)
	if res == resMatched {
		ev.Program, ev.Stamp, ev.stampKind = "nginx", line[:19], stampDate
	}
	return res
}

// parseNginxErrorMsg reads nginx's error message after the stamp:
//
//	[error] <pid>#<tid>: *<conn> user "<user>": password mismatch, client: <addr>, server: <name>, request: "<request>", host: "<host>"
//	[error] <pid>#<tid>: *<conn> user "<user>" was not found in "<file>", client: <addr>, ...
//	[error] <pid>#<tid>: *<conn> limiting requests, excess: <n> by zone "<zone>", client: <addr>, ...
//
// The user name comes before the client and the request after it, and
// both are the client's; but a basic authentication user name holds no
// ':' (the user ends at the first one), so the first ", client: " after
// it is nginx's.
func parseNginxErrorMsg(msg string, ev *Event) parseResult {
	if len(msg) < 8 || msg[0] != '[' {
		return resIgnored
	}
	rb := strings.IndexByte(msg[:min(len(msg), 10)], ']')
	if rb < 0 {
		return resIgnored
	}
	m := msg[rb+1:]
	st := strings.Index(m[:min(len(m), 48)], ": *")
	if st < 0 {
		return resIgnored
	}
	m = m[st+len(": *"):]
	sp := strings.IndexByte(m, ' ')
	if sp < 0 {
		return resIgnored
	}
	m = m[sp+1:]
	switch {
	case strings.HasPrefix(m, "limiting requests, excess: "):
		ev.Kind = KindHTTPRateLimited
		i := strings.Index(m, ", client: ")
		if i < 0 {
			return resMalformed
		}
		a := m[i+len(", client: "):]
		if j := strings.IndexByte(a, ','); j >= 0 {
			a = a[:j]
		}
		if !readAddr(a, &ev.Src) {
			return resMalformed
		}
		return resMatched
	case strings.HasPrefix(m, "user \""):
		u := m[len("user \""):]
		end := strings.Index(u, "\": password mismatch, client: ")
		if end < 0 {
			if end = strings.Index(u, "\" was not found in \""); end < 0 {
				return resIgnored
			}
		}
		ev.Kind = KindHTTPAuthFailure
		u, a := u[:end], u[end:]
		if strings.IndexByte(u, ':') >= 0 {
			// A basic authentication user name ends at the first ':'.
			return resMalformed
		}
		ev.User = u
		i := strings.Index(a, ", client: ")
		if i < 0 {
			return resMalformed
		}
		a = a[i+len(", client: "):]
		c := strings.Index(a, ", server: ")
		if c < 0 || !readAddr(a[:c], &ev.Src) {
			return resMalformed
		}
		return resMatched
	}
	return resIgnored
}

// parseApacheError reads a line of Apache's error log (2.4, and 2.2
// without the module, pid and client port):
//
//	[Sat Nov 28 12:00:01.123456 2024] [auth_basic:error] [pid 1234:tid 5678] [client <addr>:<port>] AH01617: user <user>: authentication failure for "<path>": Password Mismatch
//	[Sat Nov 28 12:00:01.123456 2024] [auth_basic:error] [pid 1234] [client <addr>:<port>] AH01618: user <user> not found: <path>
//	[Sat Nov 28 12:00:01 2024] [error] [client <addr>] user <user>: authentication failure for "<path>": Password Mismatch
//
// Apache 2.4 writes the client's port after its address, an IPv6 one
// unbracketed; 2.2 writes no port.
// Everything the client chose follows its address.
func parseApacheError(line string, ev *Event) parseResult {
	rb := strings.IndexByte(line[:min(len(line), 40)], ']')
	if rb < 25 || line[4] != ' ' || line[8] != ' ' {
		return resIgnored
	}
	stamp := line[1:rb]
	i := strings.Index(line[rb:min(len(line), rb+96)], "] [client ")
	if i < 0 {
		return resIgnored
	}
	m := line[rb+i+len("] [client "):]
	cb := strings.IndexByte(m, ']')
	if len(m) > 0 && m[0] == '[' { // "[<ipv6>]:<port>]"
		if j := strings.Index(m, "]:"); j > 0 {
			if k := strings.IndexByte(m[j+2:], ']'); k >= 0 {
				cb = j + 2 + k
			}
		}
	}
	if cb < 0 {
		return resIgnored
	}
	a, msg := m[:cb], strings.TrimPrefix(m[cb+1:], " ")
	if strings.HasPrefix(msg, "AH0") && len(msg) > 9 && msg[7] == ':' {
		msg = msg[9:]
	}
	if !strings.HasPrefix(msg, "user ") {
		return resIgnored
	}
	u := msg[len("user "):]
	switch {
	case strings.Contains(u, ": authentication failure for \""):
		ev.User = u[:strings.Index(u, ": authentication failure for \"")]
	case strings.Contains(u, " not found: "):
		ev.User = u[:strings.LastIndex(u, " not found: ")]
	default:
		return resIgnored
	}
	ev.Kind, ev.Program = KindHTTPAuthFailure, "apache"
	ev.Stamp, ev.stampKind = stamp, stampCtime
	if !strings.Contains(line[rb:rb+i], "] [pid ") {
		// Apache 2.2 writes no port
		if !readAddr(a, &ev.Src) {
			return resMalformed
		}
		return resMatched
	}
	// Apache 2.4: "<addr>:<port>", an IPv6 address unbracketed
	c := strings.LastIndexByte(a, ':')
	if c < 0 || !readAddr(strings.TrimSuffix(strings.TrimPrefix(a[:c], "["), "]"), &ev.Src) {
		return resMalformed
	}
	p, ok := parsePortEnd(a[c+1:], 0)
	if !ok {
		return resMalformed
	}
	ev.Port = p
	return resMatched
}

// parseDated dispatches a line that starts with a date and has no syslog
// tag: nginx's error log, Exim's main log, MariaDB's and PostgreSQL's
// logs.
func parseDated(line string, ev *Event) parseResult {
	if len(line) < 20 || line[4] != '-' && line[4] != '/' || line[7] != line[4] || line[10] != ' ' || line[13] != ':' {
		return resIgnored
	}
	if line[4] == '/' {
		return parseNginxError(line, ev)
	}
	// "2024-11-28 12:00:01[.fff][ <zone>] <rest>"
	end := 19
	for end < len(line) && (isDigit(line[end]) || line[end] == '.' || line[end] == ',') {
		end++
	}
	stamp := line[:end]
	rest := strings.TrimPrefix(line[end:], " ")
	var res parseResult
	switch {
	case strings.Contains(rest[:min(len(rest), 96)], " authenticator failed for "):
		res = parseExim(rest, ev)
		ev.Program = "exim"
	case strings.Contains(rest, "Access denied for user '"):
		res = parseMySQL(rest, ev)
	default:
		res = parsePostgres(rest, ev)
	}
	if res == resMatched {
		ev.Stamp, ev.stampKind = stamp, stampDate
	}
	return res
}
