package detectors

// Databases: failed logins of MySQL, MariaDB and PostgreSQL.

import (
	"net/netip"
	"strings"
)

// parseMySQL reads MySQL's and MariaDB's failed login:
//
//	[Note] Access denied for user '<user>'@'<host>' (using password: YES)
//	8 [Note] [MY-010926] [Server] Access denied for user '<user>'@'<host>' (using password: YES)
//
// The user name is the client's and comes first: the host is found from
// the end. It is an address, or a name unless skip-name-resolve is set.
func parseMySQL(msg string, ev *Event) parseResult {
	i := strings.Index(msg, "Access denied for user '")
	if i < 0 {
		return resIgnored
	}
	ev.Kind, ev.Program = KindDBAuthFailure, "mysql"
	u := msg[i+len("Access denied for user '"):]
	j := strings.LastIndex(u, "'@'")
	if j < 0 {
		return resMalformed
	}
	ev.User = u[:j]
	h := u[j+len("'@'"):]
	k := strings.IndexByte(h, '\'')
	if k < 0 || (h[k+1:] != "" && !strings.HasPrefix(h[k+1:], " (using password: ")) {
		return resMalformed
	}
	return readSource(h[:k], ev)
}

// parsePostgres reads PostgreSQL's failed logins:
//
//	<prefix> FATAL:  password authentication failed for user "<user>"
//	<prefix> FATAL:  no pg_hba.conf entry for host "<addr>", user "<user>", database "<db>", ...
//
// A password failure names no client: the client is read from the log
// line prefix, which must hold the client's address (%h or %r in
// log_line_prefix, e.g. '%m [%p] %h %q%u@%d '). The prefix also holds the
// user name the client chose, so exactly one word of it must be an
// address ("<addr>" or "<addr>(<port>)"); otherwise the line is
// malformed.
func parsePostgres(msg string, ev *Event) parseResult {
	i := strings.Index(msg, "FATAL:  ")
	if i < 0 {
		return resIgnored
	}
	prefix, m := msg[:i], msg[i+len("FATAL:  "):]
	switch {
	case strings.HasPrefix(m, "password authentication failed for user \""):
		ev.Kind, ev.Program = KindDBAuthFailure, "postgres"
		ev.User = strings.TrimSuffix(m[len("password authentication failed for user \""):], "\"")
		n := 0
		for w := range strings.FieldsSeq(prefix) {
			if p := strings.IndexByte(w, '('); p > 0 && strings.HasSuffix(w, ")") {
				w = w[:p]
			}
			var try Event
			if tryAddr(w, &try.Src) {
				n++
				ev.Src = try.Src
			}
		}
		if n != 1 {
			ev.Src = netip.Addr{}
			return resMalformed
		}
		return resMatched
	case strings.HasPrefix(m, "no pg_hba.conf entry for host \""):
		ev.Kind, ev.Program = KindDBAuthFailure, "postgres"
		h := m[len("no pg_hba.conf entry for host \""):]
		j := strings.IndexByte(h, '"')
		if j < 0 || !readAddr(h[:j], &ev.Src) {
			return resMalformed
		}
		if u := strings.Index(h[j:], ", user \""); u >= 0 {
			uu := h[j+u+len(", user \""):]
			if e := strings.LastIndex(uu, "\", database \""); e >= 0 {
				ev.User = uu[:e]
			}
		}
		return resMatched
	}
	return resIgnored
}
