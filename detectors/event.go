package detectors

import (
	"net/netip"
	"strconv"
)

// Kind says what a parsed line reports.
type Kind uint8

// Kinds of events. Rules select them by name (Kind.String) in a "kind"
// condition.
const (
	KindNone Kind = iota
	// KindSSHFailed: "Failed <method> for [invalid user ]<user> from <addr> port <n>".
	KindSSHFailed
	// KindSSHInvalidUser: "Invalid user <user> from <addr> port <n>".
	KindSSHInvalidUser
	// KindSSHPreauthDisconnect: a connection closed or disconnected before
	// authentication ("Connection closed by ...", "Disconnected from ...",
	// "Received disconnect from ... [preauth]").
	KindSSHPreauthDisconnect
	// KindSSHPreauthReset: "Connection reset by ... [preauth]".
	KindSSHPreauthReset
	// KindSSHMaxAuth: "maximum authentication attempts exceeded for ..." or
	// "Disconnecting ...: Too many authentication failures".
	KindSSHMaxAuth
	// KindSSHPAMFailure: "pam_unix(sshd:auth): authentication failure; ... rhost=<addr>".
	KindSSHPAMFailure
	// KindSSHBreakIn: "... POSSIBLE BREAK-IN ATTEMPT!" (reverse DNS mismatch).
	KindSSHBreakIn
	// KindHTTPRequest: one request of a web access log (nginx or Apache
	// combined format).
	KindHTTPRequest
	// KindFirewall: a kernel firewall log line (iptables or nftables LOG).
	KindFirewall
	// KindSSHNotAllowed: sshd refused a user by its configuration
	// ("User <u> from <addr> not allowed because ...", "ROOT LOGIN
	// REFUSED FROM <addr>", a TCP wrappers "refused connect from").
	KindSSHNotAllowed
	// KindSSHKex: a connection that never got to authentication: no or a
	// bad identification string, no common algorithm, a corrupt or
	// timed-out key exchange.
	KindSSHKex
	// KindPAMFailure: "pam_unix(<service>:auth): authentication failure;
	// ... rhost=<addr>" or the older "<service>(pam_unix)[pid]:
	// authentication failure; ..." of a service other than sshd.
	KindPAMFailure
	// KindLocalAuthFailure: a failed sudo or su, or a PAM failure with no
	// remote host. It names no remote party, so no rule can attribute it:
	// such lines are counted (EngineStats.Local), never reported.
	KindLocalAuthFailure
	// KindMailAuthFailure: a failed SMTP or IMAP/POP3 login (Postfix SASL,
	// Dovecot, Exim authenticators).
	KindMailAuthFailure
	// KindFTPAuthFailure: a failed FTP login (vsftpd, ProFTPD, Pure-FTPd).
	KindFTPAuthFailure
	// KindHTTPAuthFailure: a failed HTTP basic authentication in a web
	// server's error log (nginx, Apache).
	KindHTTPAuthFailure
	// KindHTTPRateLimited: a request refused by nginx limit_req.
	KindHTTPRateLimited
	// KindDBAuthFailure: a failed database login (MySQL, MariaDB,
	// PostgreSQL).
	KindDBAuthFailure
	// KindVPNAuthFailure: a failed OpenVPN handshake or authentication.
	KindVPNAuthFailure
	// KindK8sDenied: a Kubernetes API request refused with 401 or 403
	// (audit log).
	KindK8sDenied
	// KindCloudLoginFailure: a failed AWS console login (CloudTrail).
	KindCloudLoginFailure
	// KindMailRelayDenied: a mail server refused to relay for a client
	// ("Relay access denied"): it is probing for an open relay.
	KindMailRelayDenied
	numKinds
)

// The rule compiler keeps the kinds a rule may match as bits of a uint64.
var _ [64 - numKinds]struct{}

var kindNames = [numKinds]string{
	KindNone:                 "none",
	KindSSHFailed:            "ssh_failed",
	KindSSHInvalidUser:       "ssh_invalid_user",
	KindSSHPreauthDisconnect: "ssh_preauth_disconnect",
	KindSSHPreauthReset:      "ssh_preauth_reset",
	KindSSHMaxAuth:           "ssh_max_auth",
	KindSSHPAMFailure:        "ssh_pam_failure",
	KindSSHBreakIn:           "ssh_breakin",
	KindHTTPRequest:          "http_request",
	KindFirewall:             "firewall",
	KindSSHNotAllowed:        "ssh_not_allowed",
	KindSSHKex:               "ssh_kex_failure",
	KindPAMFailure:           "pam_failure",
	KindLocalAuthFailure:     "local_auth_failure",
	KindMailAuthFailure:      "mail_auth_failure",
	KindFTPAuthFailure:       "ftp_auth_failure",
	KindHTTPAuthFailure:      "http_auth_failure",
	KindHTTPRateLimited:      "http_rate_limited",
	KindDBAuthFailure:        "db_auth_failure",
	KindVPNAuthFailure:       "vpn_auth_failure",
	KindK8sDenied:            "k8s_denied",
	KindCloudLoginFailure:    "cloud_login_failure",
	KindMailRelayDenied:      "mail_relay_denied",
}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

func kindByName(s string) (Kind, bool) {
	for k, n := range kindNames {
		if n == s && k != int(KindNone) {
			return Kind(k), true
		}
	}
	return 0, false
}

// Event is what a parser extracts from one line: a small fixed set of
// named fields. Its strings point into the line and are valid only while
// the line is; the engine never keeps them.
type Event struct {
	Kind    Kind
	Program string     // syslog tag without pid, e.g. "sshd", "kernel", "nginx"; or the log's family ("exim", "traefik")
	Src     netip.Addr // the remote party: ssh client, http client, packet source
	// Host is the remote party when the log names it by a host name
	// (sshd with UseDNS, pam_unix's rhost, proftpd): Src is then
	// invalid, and a sighting reports the name as a domain.
	Host    string
	Port    uint16     // source port, 0 when unknown
	Dst     netip.Addr // firewall lines: packet destination
	DstPort uint16     // firewall lines: destination port
	User    string     // user name tried (ssh, pam, mail, ftp, database), http remote user
	Method  string     // ssh auth method ("password", "publickey", ...), mail SASL mechanism ("passdb": a Dovecot authentication-process line), PAM service, http method or verb
	Path    string     // http path without query string, Kubernetes request URI
	Query   string     // http query string, without the '?'
	Status  int        // http status
	Agent   string     // http user agent
	Proto   string     // firewall lines: PROTO= ("TCP", "UDP", ...)
	Tag     string     // firewall lines: the log prefix, e.g. "[UFW BLOCK]"
	// Stamp is the raw timestamp of the line, "" when it has none.
	Stamp string
	// invalid marks "Failed ... for invalid user": sshd logs it after the
	// "Invalid user" line of the same connection for its first attempt.
	invalid bool
	// stampKind says how Stamp is written.
	stampKind stampKind
}

// stampKind says how an event's Stamp is written.
type stampKind uint8

const (
	stampSyslog stampKind = iota // "Nov 28 12:00:01" or RFC 3339
	stampWeb                     // "10/Oct/2000:13:55:36 -0700"
	stampDate                    // "2024-11-28 12:00:01[.fff]" or "2024/11/28 12:00:01", local time
	stampCtime                   // "Sat Nov 28 12:00:01[.ffffff] 2024", local time
	stampUnix                    // "1732795201.123", seconds since the epoch
)

// Field names a field of Event in rules.
type Field uint8

// Fields of Event.
const (
	FieldNone Field = iota
	FieldKind
	FieldProgram
	FieldSrc
	FieldPort
	FieldDst
	FieldDstPort
	FieldUser
	FieldMethod
	FieldPath
	FieldStatus
	FieldProto
	FieldTag
	FieldAgent
	FieldQuery
	numFields
)

var fieldNames = [numFields]string{
	FieldNone:    "none",
	FieldKind:    "kind",
	FieldProgram: "program",
	FieldSrc:     "src",
	FieldPort:    "port",
	FieldDst:     "dst",
	FieldDstPort: "dst_port",
	FieldUser:    "user",
	FieldMethod:  "method",
	FieldPath:    "path",
	FieldStatus:  "status",
	FieldProto:   "proto",
	FieldTag:     "tag",
	FieldAgent:   "agent",
	FieldQuery:   "query",
}

func (f Field) String() string {
	if f < numFields {
		return fieldNames[f]
	}
	return "field(" + strconv.Itoa(int(f)) + ")"
}

func fieldByName(s string) (Field, bool) {
	for f, n := range fieldNames {
		if n == s && f != int(FieldNone) {
			return Field(f), true
		}
	}
	return 0, false
}

// fieldType says how a field is compared.
type fieldType uint8

const (
	typeString fieldType = iota
	typeNumber
	typeAddr
)

func (f Field) typ() fieldType {
	switch f {
	case FieldPort, FieldDstPort, FieldStatus:
		return typeNumber
	case FieldSrc, FieldDst:
		return typeAddr
	}
	return typeString
}

// str returns a string field's value.
func (ev *Event) str(f Field) string {
	switch f {
	case FieldKind:
		return ev.Kind.String()
	case FieldProgram:
		return ev.Program
	case FieldUser:
		return ev.User
	case FieldMethod:
		return ev.Method
	case FieldPath:
		return ev.Path
	case FieldProto:
		return ev.Proto
	case FieldTag:
		return ev.Tag
	case FieldAgent:
		return ev.Agent
	case FieldQuery:
		return ev.Query
	}
	return ""
}

// num returns a numeric field's value.
func (ev *Event) num(f Field) int64 {
	switch f {
	case FieldPort:
		return int64(ev.Port)
	case FieldDstPort:
		return int64(ev.DstPort)
	case FieldStatus:
		return int64(ev.Status)
	}
	return 0
}

// addr returns an address field's value.
func (ev *Event) addr(f Field) netip.Addr {
	if f == FieldDst {
		return ev.Dst
	}
	return ev.Src
}
