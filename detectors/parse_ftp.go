package detectors

// FTP: failed logins of vsftpd, ProFTPD and Pure-FTPd.

import "strings"

// parseVsftpd reads vsftpd's failed login, as it writes it to syslog:
//
//	[<user>] FAIL LOGIN: Client "<addr>"[, "<reason>"]
//
// The user name is the client's and comes first: the client is found
// from the end.
func parseVsftpd(msg string, ev *Event) parseResult {
	i := strings.LastIndex(msg, "] FAIL LOGIN: Client \"")
	if i < 0 || msg[0] != '[' {
		return resIgnored
	}
	ev.Kind, ev.User = KindFTPAuthFailure, msg[1:i]
	a := msg[i+len("] FAIL LOGIN: Client \""):]
	j := strings.IndexByte(a, '"')
	if j < 0 {
		return resMalformed
	}
	if r := a[j+1:]; r != "" && !strings.HasPrefix(r, ", \"") {
		return resMalformed
	}
	if !readAddr(a[:j], &ev.Src) {
		return resMalformed
	}
	return resMatched
}

// parseVsftpdLog reads a line of vsftpd's own log (vsftpd.log):
//
//	Sat Nov 28 12:00:01 2024 [pid 1234] [<user>] FAIL LOGIN: Client "<addr>"
func parseVsftpdLog(line string, ev *Event) parseResult {
	if len(line) < 26 || line[3] != ' ' || line[7] != ' ' || line[13] != ':' {
		return resIgnored
	}
	i := strings.Index(line[:min(len(line), 48)], " [pid ")
	if i < 24 {
		return resIgnored
	}
	j := strings.Index(line[i:], "] ")
	if j < 0 {
		return resIgnored
	}
	res := parseVsftpd(line[i+j+2:], ev)
	if res == resMatched {
		ev.Program, ev.Stamp, ev.stampKind = "vsftpd", line[:i], stampCtime
	}
	return res
}

// parseProftpd reads ProFTPD's failed logins:
//
//	<server> (<name>[<addr>]) - USER <user> (Login failed): <reason>
//	<server> (<name>[<addr>]) - USER <user>: no such user found from <name> [<addr>] to <addr>:<port>
//	<server> (<name>[<addr>]) - Maximum login attempts (3) exceeded, connection refused
//	<server> (<name>[<addr>]) - SECURITY VIOLATION: Root login attempted
//
// What follows " - " is the client's; the client is read before it.
func parseProftpd(msg string, ev *Event) parseResult {
	op := strings.Index(msg, " (")
	if op < 0 {
		return resIgnored
	}
	cl := strings.Index(msg[op:], "]) - ")
	if cl < 0 {
		return resIgnored
	}
	cl += op
	what := msg[cl+len("]) - "):]
	u, isUser := strings.CutPrefix(what, "USER ")
	switch {
	case isUser && strings.Contains(u, " (Login failed)"):
		ev.User = u[:strings.LastIndex(u, " (Login failed)")]
	case isUser && strings.Contains(u, ": no such user found from "):
		ev.User = u[:strings.LastIndex(u, ": no such user found from ")]
	case strings.HasPrefix(what, "Maximum login attempts ("), strings.HasPrefix(what, "SECURITY VIOLATION: Root login attempted"):
	default:
		return resIgnored
	}
	ev.Kind = KindFTPAuthFailure
	lb := strings.LastIndexByte(msg[op:cl], '[')
	if lb < 0 || !readAddr(msg[op+lb+1:cl], &ev.Src) {
		return resMalformed
	}
	return resMatched
}

// parsePureFTPd reads Pure-FTPd's failed login:
//
//	(?@<host>) [WARNING] Authentication failed for user [<user>]
//
// <host> is an address, or a name when Pure-FTPd resolves clients.
func parsePureFTPd(msg string, ev *Event) parseResult {
	if len(msg) < 4 || msg[0] != '(' {
		return resIgnored
	}
	j := strings.Index(msg, ") [")
	if j < 0 {
		return resIgnored
	}
	r := msg[j+2:]
	if !strings.HasPrefix(r, "[WARNING] Authentication failed for user [") {
		return resIgnored
	}
	ev.Kind = KindFTPAuthFailure
	ev.User = strings.TrimSuffix(r[len("[WARNING] Authentication failed for user ["):], "]")
	at := strings.LastIndexByte(msg[:j], '@')
	if at < 0 {
		return resMalformed
	}
	return readSource(msg[at+1:j], ev)
}
