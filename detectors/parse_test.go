package detectors

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oldKind classifies the OpenSSH failure events as these cases name them.
type eventKind uint8

const (
	kindFailed eventKind = iota + 1
	kindFailedInvalid
	kindInvalidUser
)

func parseSSH(line string) (struct {
	kind eventKind
	addr netip.Addr
	port uint16
}, parseResult) {
	var ev Event
	res := parseLine(line, &ev)
	var out struct {
		kind eventKind
		addr netip.Addr
		port uint16
	}
	switch {
	case res != resMatched:
	case ev.Kind == KindSSHFailed && ev.invalid:
		out.kind = kindFailedInvalid
	case ev.Kind == KindSSHFailed:
		out.kind = kindFailed
	case ev.Kind == KindSSHInvalidUser:
		out.kind = kindInvalidUser
	default:
		return out, resIgnored // another kind: not a failure these cases are about
	}
	out.addr, out.port = ev.Src, ev.Port
	return out, res
}

func TestParseSSH(t *testing.T) {
	const h = "Nov 28 12:00:01 web-1 sshd[1234]: "
	tests := []struct {
		name string
		line string
		res  parseResult
		kind eventKind
		addr string
		port uint16
	}{
		{"failed password", h + "Failed password for root from 203.0.113.7 port 52311 ssh2", resMatched, kindFailed, "203.0.113.7", 52311},
		{"failed invalid user", h + "Failed password for invalid user admin from 203.0.113.7 port 52311 ssh2", resMatched, kindFailedInvalid, "203.0.113.7", 52311},
		{"invalid user", h + "Invalid user admin from 203.0.113.7 port 52311", resMatched, kindInvalidUser, "203.0.113.7", 52311},
		{"ipv6", h + "Failed password for root from 2001:db8::7 port 22 ssh2", resMatched, kindFailed, "2001:db8::7", 22},
		{"ipv4-mapped ipv6", h + "Failed password for root from ::ffff:203.0.113.7 port 22 ssh2", resMatched, kindFailed, "203.0.113.7", 22},
		{"zoned ipv6", h + "Invalid user pi from fe80::1%eth0 port 22", resMatched, kindInvalidUser, "fe80::1", 22},
		{"publickey with key", h + "Failed publickey for git from 198.51.100.4 port 40000 ssh2: RSA SHA256:abcdef", resMatched, kindFailed, "198.51.100.4", 40000},
		{"keyboard-interactive", h + "Failed keyboard-interactive/pam for invalid user oracle from 198.51.100.4 port 1 ssh2", resMatched, kindFailedInvalid, "198.51.100.4", 1},
		{"preauth suffix", h + "Invalid user test from 198.51.100.4 port 5 [preauth]", resMatched, kindInvalidUser, "198.51.100.4", 5},
		{"no port (old sshd)", h + "Invalid user test from 198.51.100.4", resMatched, kindInvalidUser, "198.51.100.4", 0},
		{"sshd-session", "Nov 28 12:00:01 web-1 sshd-session[99]: Failed password for root from 203.0.113.7 port 1 ssh2", resMatched, kindFailed, "203.0.113.7", 1},
		{"tag without pid", "Nov 28 12:00:01 web-1 sshd: Failed password for root from 203.0.113.7 port 1 ssh2", resMatched, kindFailed, "203.0.113.7", 1},
		{"rfc3339 stamp", "2024-11-28T12:00:01.123456+00:00 web-1 sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2", resMatched, kindFailed, "203.0.113.7", 1},
		{"syslog pri", "<38>Nov 28 12:00:01 web-1 sshd[1]: Invalid user a from 203.0.113.7 port 1", resMatched, kindInvalidUser, "203.0.113.7", 1},
		{"no stamp, tag first", "sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2", resMatched, kindFailed, "203.0.113.7", 1},
		{"no stamp, host first", "web-1 sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2", resMatched, kindFailed, "203.0.113.7", 1},
		{"user name with spaces", h + "Invalid user foo bar from 203.0.113.7 port 22", resMatched, kindInvalidUser, "203.0.113.7", 22},
		{"empty user name", h + "Invalid user  from 203.0.113.7 port 22", resMatched, kindInvalidUser, "203.0.113.7", 22},
		{"injection in user name", h + "Invalid user x from 10.0.0.1 port 22 from 203.0.113.7 port 4242", resMatched, kindInvalidUser, "203.0.113.7", 4242},
		{"injection in failed user", h + "Failed password for invalid user x from 10.0.0.1 port 22 ssh2 from 203.0.113.7 port 4242 ssh2", resMatched, kindFailedInvalid, "203.0.113.7", 4242},
		{"non-utf8 user", h + "Invalid user \xff\xfe\xc0 from 203.0.113.7 port 22", resMatched, kindInvalidUser, "203.0.113.7", 22},
		{"crlf line", h + "Failed password for root from 203.0.113.7 port 22 ssh2\r", resMatched, kindFailed, "203.0.113.7", 22},
		{"certificate", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID alice (serial 7) CA ED25519 SHA256:ZGVm", resMatched, kindFailed, "198.51.100.4", 52311},
		{"certificate ID names a source", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID evil from 10.0.0.1 (serial 7) CA ED25519 SHA256:ZGVm", resMatched, kindFailed, "198.51.100.4", 52311},
		{"certificate ID names a source and port", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: RSA-CERT SHA256:YWJj ID evil from 10.0.0.1 port 22 (serial 7) CA RSA SHA256:ZGVm", resMatched, kindFailed, "198.51.100.4", 52311},
		{"certificate of OpenSSH before 6.8", h + "Failed publickey for alice from 198.51.100.4 port 1 ssh2: RSA-CERT ID evil from 10.0.0.1 port 22 (serial 7) CA RSA 3f:1a:22", resMatched, kindFailed, "198.51.100.4", 1},
		{"key with info", h + "Failed hostbased for alice from 198.51.100.4 port 1 ssh2: RSA SHA256:YWJj, client user \"a from 10.0.0.1 port 2 ssh2\", client host \"h\"", resMatched, kindFailed, "198.51.100.4", 1},
		{"gssapi principal", h + "Failed gssapi-with-mic for alice from 198.51.100.4 port 1 ssh2: alice@EXAMPLE.ORG", resMatched, kindFailed, "198.51.100.4", 1},
		{"password: nothing after ssh2 is sshd's", h + "Failed password for x from 10.0.0.1 port 22 ssh2: RSA SHA256:YWJj from 198.51.100.4 port 1 ssh2", resMatched, kindFailed, "198.51.100.4", 1},
		{"user named like a source", h + "Invalid user from 10.0.0.1 from 203.0.113.9 port 22", resMatched, kindInvalidUser, "203.0.113.9", 22},

		{"accepted", h + "Accepted password for bob from 203.0.113.7 port 22 ssh2", resIgnored, 0, "", 0},
		{"connection closed", h + "Connection closed by invalid user admin 203.0.113.7 port 22 [preauth]", resIgnored, 0, "", 0},
		{"disconnected", h + "Disconnected from authenticating user root 203.0.113.7 port 22 [preauth]", resIgnored, 0, "", 0},
		{"failed without for", h + "Failed to create session: no such file", resIgnored, 0, "", 0},
		{"cron", "Nov 28 12:00:01 web-1 CRON[77]: pam_unix(cron:session): session opened for user root(uid=0)", resIgnored, 0, "", 0},
		{"other program quoting sshd", "Nov 28 12:00:01 web-1 sudo: Failed password for root from 203.0.113.7 port 22 ssh2", resIgnored, 0, "", 0},
		{"sshd prefix of another tag", "Nov 28 12:00:01 web-1 sshdfoo[1]: Failed password for root from 203.0.113.7 port 22 ssh2", resIgnored, 0, "", 0},
		{"bad pid", "Nov 28 12:00:01 web-1 sshd[12a]: Failed password for root from 203.0.113.7 port 22 ssh2", resIgnored, 0, "", 0},
		{"empty", "", resIgnored, 0, "", 0},
		{"binary junk", "\x00\xff\xfe\x01sshd", resIgnored, 0, "", 0},
		{"stamp only", "Nov 28 12:00:01 ", resIgnored, 0, "", 0},
		{"host only", "Nov 28 12:00:01 web-1", resIgnored, 0, "", 0},

		{"bad address", h + "Failed password for root from 999.1.1.1 port 22 ssh2", resMalformed, 0, "", 0},
		{"cut in address", h + "Failed password for root from 203.0.11", resMalformed, 0, "", 0},
		{"cut before from", h + "Failed password for root fr", resMalformed, 0, "", 0},
		{"bad port", h + "Failed password for root from 203.0.113.7 port abc ssh2", resMalformed, 0, "", 0},
		{"port too large", h + "Failed password for root from 203.0.113.7 port 65536 ssh2", resMalformed, 0, "", 0},
		{"junk after address", h + "Invalid user a from 203.0.113.7 junk", resMalformed, 0, "", 0},
		{"junk after port", h + "Invalid user a from 203.0.113.7 port 22 junk", resMalformed, 0, "", 0},
		{"failed without ssh2", h + "Failed password for root from 203.0.113.7 port 22", resMalformed, 0, "", 0},
		{"junk after ssh2", h + "Failed password for root from 203.0.113.7 port 22 ssh2 junk", resMalformed, 0, "", 0},
		{"certificate ID names a second source", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID evil from 10.0.0.1 port 22 ssh2: ED25519 SHA256:eA (serial 7) CA ED25519 SHA256:ZGVm", resMalformed, 0, "", 0},
		{"certificate ID cut after a second source", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID evil from 10.0.0.1 port 22 ssh2", resMalformed, 0, "", 0},
		{"user and ID each name a source", h + "Failed publickey for invalid user x from 10.0.0.1 port 22 ssh2: RSA-CERT ID y from 198.51.100.4 port 1 ssh2: RSA-CERT SHA256:YWJj ID z (serial 1) CA RSA SHA256:ZGVm", resMalformed, 0, "", 0},
		{"publickey extra that is no key", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: not a key from 10.0.0.1 port 22 ssh2", resMalformed, 0, "", 0},
		{"publickey extra that is no key, alone", h + "Failed publickey for alice from 198.51.100.4 port 52311 ssh2: not a key", resMalformed, 0, "", 0},
		{"gssapi principal names a second source", h + "Failed gssapi-with-mic for alice from 198.51.100.4 port 1 ssh2: x from 10.0.0.1 port 22 ssh2", resMalformed, 0, "", 0},
		{"max auth with junk", h + "error: maximum authentication attempts exceeded for root from 203.0.113.7 port 12 ssh2 from 10.0.0.1 [preauth]", resMalformed, 0, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, res := parseSSH(tc.line)
			if res != tc.res {
				t.Fatalf("result %d, want %d", res, tc.res)
			}
			if res != resMatched {
				return
			}
			if ev.kind != tc.kind || ev.addr != netip.MustParseAddr(tc.addr) || ev.port != tc.port {
				t.Fatalf("got kind %d addr %s port %d, want kind %d addr %s port %d", ev.kind, ev.addr, ev.port, tc.kind, tc.addr, tc.port)
			}
		})
	}
}

func TestParseStamp(t *testing.T) {
	utc := func(y int, m time.Month, d, hh, mm, ss int) time.Time {
		return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	}
	tests := []struct {
		stamp string
		now   time.Time
		want  time.Time // zero: unparsable
	}{
		{"Nov 28 12:00:01", utc(2024, 11, 28, 12, 0, 30), utc(2024, 11, 28, 12, 0, 1)},
		{"Nov  2 03:04:05", utc(2024, 11, 28, 12, 0, 30), utc(2024, 11, 2, 3, 4, 5)},
		{"Dec 31 23:59:59", utc(2025, 1, 1, 0, 0, 10), utc(2024, 12, 31, 23, 59, 59)},
		{"Jan  1 00:00:05", utc(2024, 12, 31, 23, 59, 0), utc(2025, 1, 1, 0, 0, 5)},
		{"Nov 29 11:00:00", utc(2024, 11, 28, 12, 0, 0), utc(2024, 11, 29, 11, 0, 0)}, // less than a day ahead: this year
		{"Nov 29 13:00:00", utc(2024, 11, 28, 12, 0, 0), utc(2023, 11, 29, 13, 0, 0)}, // more than a day ahead: last year
		{"Feb 29 10:00:00", utc(2024, 3, 1, 0, 0, 0), utc(2024, 2, 29, 10, 0, 0)},
		{"Feb 30 10:00:00", utc(2024, 3, 1, 0, 0, 0), time.Time{}},
		{"Foo 28 12:00:01", utc(2024, 11, 28, 12, 0, 0), time.Time{}},
		{"Nov 28 25:00:01", utc(2024, 11, 28, 12, 0, 0), time.Time{}},
		{"Nov x8 12:00:01", utc(2024, 11, 28, 12, 0, 0), time.Time{}},
		{"2024-11-28T12:00:01.5+01:00", utc(2030, 1, 1, 0, 0, 0), time.Date(2024, 11, 28, 11, 0, 1, 500e6, time.UTC)},
		{"2024-11-28Tgarbage", utc(2030, 1, 1, 0, 0, 0), time.Time{}},
		{"", utc(2030, 1, 1, 0, 0, 0), time.Time{}},
	}
	for _, tc := range tests {
		got, ok := parseStamp(tc.stamp, tc.now)
		if ok != !tc.want.IsZero() || (ok && !got.Equal(tc.want)) {
			t.Errorf("parseStamp(%q, %s) = %s, %v; want %s", tc.stamp, tc.now, got, ok, tc.want)
		}
	}
}

func FuzzParseSSH(f *testing.F) {
	f.Add("Nov 28 12:00:01 web-1 sshd[1234]: Failed password for invalid user admin from 203.0.113.7 port 52311 ssh2")
	f.Add("Nov 28 12:00:01 web-1 sshd[1234]: Invalid user admin from 2001:db8::1 port 1")
	f.Add("<38>2024-11-28T12:00:01Z h sshd: Failed x for y from 1.2.3.4")
	f.Add("\xff")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Failed publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID evil from 10.0.0.1 (serial 7) CA ED25519 SHA256:ZGVm")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Failed publickey for alice from 198.51.100.4 port 52311 ssh2: RSA-CERT SHA256:YWJj ID evil from 10.0.0.1 port 22 ssh2: RSA SHA256:eA (serial 7) CA RSA SHA256:ZGVm")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Failed publickey for alice from 198.51.100.4 port 52311 ssh2: RSA-CERT ID evil from 10.0.0.1 port 22 ssh2")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Accepted publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID evil from 10.0.0.1 (serial 7) CA ED25519 SHA256:ZGVm")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Failed hostbased for a from 198.51.100.4 port 1 ssh2: RSA SHA256:YWJj, client user \"u\", client host \"x from 10.0.0.1 port 2 ssh2\"")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Failed gssapi-with-mic for a from 198.51.100.4 port 1 ssh2: a@EXAMPLE.ORG")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: Invalid user from 10.0.0.1 from 203.0.113.9 port 22")
	f.Add("Nov 28 12:00:01 web-1 sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=x rhost=10.0.0.1")
	now := time.Date(2024, 11, 28, 12, 0, 0, 0, time.UTC)
	f.Add("203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] \"GET /a HTTP/1.1\" 404 1 \"-\" \"x\"")
	f.Add("Nov 28 12:00:01 fw kernel: [1.2] [UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP SPT=1 DPT=22")
	// The other families' golden inputs.
	for _, dir := range []string{"pam", "sshmodes", "mail", "ftp", "weberror", "db", "vpn", "json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "parse", dir, "input"))
		if err != nil {
			f.Fatal(err)
		}
		for l := range strings.SplitSeq(string(data), "\n") {
			f.Add(l)
		}
	}
	f.Fuzz(func(t *testing.T, line string) {
		var ev Event
		res := parseLine(line, &ev)
		if res == resMatched {
			if !ev.Src.IsValid() && hostName(ev.Host) != hostRemote || ev.Src.Zone() != "" || ev.Src.Is4In6() {
				t.Fatalf("matched with address %v", ev.Src)
			}
			if ev.Kind == KindNone {
				t.Fatal("matched without a kind")
			}
			parseStampKind(ev.stampKind, ev.Stamp, now)
		}
	})
}
