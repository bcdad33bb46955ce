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
	numKinds
)

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
	Program string     // syslog tag without pid, e.g. "sshd", "kernel", "nginx"
	Src     netip.Addr // the remote party: ssh client, http client, packet source
	Port    uint16     // source port, 0 when unknown
	Dst     netip.Addr // firewall lines: packet destination
	DstPort uint16     // firewall lines: destination port
	User    string     // ssh user name, http remote user
	Method  string     // ssh auth method ("password", "publickey", ...) or http method
	Path    string     // http path without query string
	Status  int        // http status
	Proto   string     // firewall lines: PROTO= ("TCP", "UDP", ...)
	Tag     string     // firewall lines: the log prefix, e.g. "[UFW BLOCK]"
	// Stamp is the raw timestamp of the line, "" when it has none.
	Stamp string
	// invalid marks "Failed ... for invalid user": sshd logs it after the
	// "Invalid user" line of the same connection for its first attempt.
	invalid bool
	web     bool // Stamp is a web access log stamp ("10/Oct/2000:13:55:36 -0700")
}

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
