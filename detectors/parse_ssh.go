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
