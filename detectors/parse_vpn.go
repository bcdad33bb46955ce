package detectors

// OpenVPN: failed handshakes and authentications of a server.

import "strings"

// parseOpenVPN reads an OpenVPN server's failures:
//
//	<addr>:<port> TLS Auth Error: Auth Username/Password verification failed for peer
//	<addr>:<port> TLS Error: TLS handshake failed
//	<addr>:<port> VERIFY ERROR: depth=0, error=<reason>: <subject>
//	TLS Error: cannot locate HMAC in incoming packet from [AF_INET]<addr>:<port>
//	TLS Error: tls-crypt unwrapping failed from [AF_INET]<addr>:<port>
//
// A client known by its certificate is written "<cn>/<addr>:<port>".
func parseOpenVPN(msg string, ev *Event) parseResult {
	if strings.HasPrefix(msg, "TLS Error: ") {
		m := msg[len("TLS Error: "):]
		i := strings.LastIndex(m, " from ")
		if i < 0 || !(strings.HasPrefix(m, "cannot locate HMAC in incoming packet") || strings.HasPrefix(m, "tls-crypt unwrapping failed") ||
			strings.HasPrefix(m, "incoming packet authentication failed")) {
			return resIgnored
		}
		ev.Kind, ev.Method = KindVPNAuthFailure, "hmac"
		return vpnPeer(m[i+len(" from "):], ev)
	}
	sp := strings.IndexByte(msg, ' ')
	if sp <= 0 {
		return resIgnored
	}
	r := msg[sp+1:]
	switch {
	case strings.HasPrefix(r, "TLS Auth Error: "):
		ev.Method = "password"
	case r == "TLS Error: TLS handshake failed":
		ev.Method = "tls"
	case strings.HasPrefix(r, "VERIFY ERROR: "):
		ev.Method = "certificate"
	case strings.HasPrefix(r, "TLS Error: ") && strings.Contains(r, "packet authentication failed"):
		ev.Method = "hmac"
	default:
		return resIgnored
	}
	ev.Kind = KindVPNAuthFailure
	return vpnPeer(msg[:sp], ev)
}

// vpnPeer reads "[AF_INET]<addr>:<port>", "<cn>/<addr>:<port>" or
// "<addr>:<port>" (an IPv6 address is followed by its port the same way).
func vpnPeer(s string, ev *Event) parseResult {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "[AF_INET]"), "[AF_INET6]")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	c := strings.LastIndexByte(s, ':')
	if c < 0 {
		return resMalformed
	}
	p, ok := parsePortEnd(s[c+1:], 0)
	if !ok || !readAddr(s[:c], &ev.Src) {
		return resMalformed
	}
	ev.Port = p
	return resMatched
}
