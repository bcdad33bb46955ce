package detectors

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshward/meshward/intel"
)

// The OpenSSH messages whose source an attacker may try to forge: the
// user name comes before the source and the extra (a certificate's key ID,
// a hostbased client's names, a GSSAPI principal) after it, both chosen by
// the client.
const (
	injSrc  = "198.51.100.4"
	injPort = 52311
)

// sshdMessages renders what sshd logs for a client at injSrc choosing
// user and extra, as sshd writes them: the user name cut at 100 bytes,
// every byte that is not printable ASCII escaped (here replaced), and the
// message cut at cut bytes after the source's " ssh2" when cut >= 0
// (syslog cuts at 500).
func sshdMessages(user, extra string, cut int) []string {
	printable := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < 0x20 || r > 0x7e {
				return 'x'
			}
			return r
		}, s)
	}
	user, extra = printable(user), printable(extra)
	if len(user) > 100 {
		user = user[:100]
	}
	from := " from " + injSrc + " port 52311"
	type form struct{ head, tail string }
	forms := []form{
		{"Failed publickey for " + user + from + " ssh2", ": ED25519-CERT SHA256:YWJjZGVm ID " + extra + " (serial 7) CA ED25519 SHA256:ZGVmYWJj"},
		{"Failed publickey for invalid user " + user + from + " ssh2", ": RSA-CERT ID " + extra + " (serial 18446744073709551615) CA RSA 3f:1a:22:9c"},
		{"Failed publickey for " + user + from + " ssh2", ": RSA SHA256:YWJjZGVm"},
		{"Failed publickey for " + user + from + " ssh2", ""},
		{"Failed hostbased for " + user + from + " ssh2", ": RSA SHA256:YWJjZGVm, client user \"" + extra + "\", client host \"" + extra + "\""},
		{"Failed gssapi-with-mic for " + user + from + " ssh2", ": " + extra},
		{"Failed password for invalid user " + user + from + " ssh2", ""},
		{"Failed keyboard-interactive/pam for " + user + from + " ssh2", ""},
		{"error: maximum authentication attempts exceeded for " + user + from + " ssh2", ""},
		{"Invalid user " + user + from, ""},
	}
	out := make([]string, 0, len(forms))
	for _, f := range forms {
		if f.tail == "" && extra != "" && strings.HasPrefix(f.head, "Failed gssapi") {
			continue
		}
		m := f.head + f.tail
		if cut >= 0 && len(f.head)+cut < len(m) {
			m = m[:len(f.head)+cut]
		}
		out = append(out, "Nov 28 12:00:01 web-1 sshd[1]: "+m)
	}
	return out
}

// checkInjection fails unless every message of sshdMessages is malformed
// or names injSrc and its port.
func checkInjection(t *testing.T, user, extra string, cut int) {
	t.Helper()
	want := netip.MustParseAddr(injSrc)
	for _, line := range sshdMessages(user, extra, cut) {
		var ev Event
		switch res := parseLine(line, &ev); res {
		case resMalformed:
		case resMatched:
			if ev.Src != want || ev.Port != injPort {
				t.Fatalf("%q\nnames %s port %d, want %s port %d", line, ev.Src, ev.Port, want, injPort)
			}
		default:
			t.Fatalf("%q: result %d", line, res)
		}
	}
}

// TestSSHInjectionGenerated builds user names and key IDs from the pieces
// of sshd's own messages, cuts the messages anywhere after the source, and
// checks that no line is ever attributed to another source.
func TestSSHInjectionGenerated(t *testing.T) {
	pieces := []string{" from ", "10.0.0.1", "2001:db8::1", " port ", "22", " ssh2", ": ", " ssh2: ",
		"RSA-CERT ", "ED25519 ", "SHA256:YWJj ", "ID ", " (serial 7) CA RSA SHA256:ZGVm", ", ", "x", "invalid user ", " [preauth]", "\""}
	rng := rand.New(rand.NewPCG(11, 12))
	word := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	matched := 0
	for range 5000 {
		user, extra, cut := word(), word(), -1
		if rng.IntN(2) == 0 {
			cut = rng.IntN(200)
		}
		checkInjection(t, user, extra, cut)
		var ev Event
		if parseLine(sshdMessages(user, extra, cut)[0], &ev) == resMatched {
			matched++
		}
	}
	if matched == 0 {
		t.Fatal("no certificate line was read: the test checks nothing")
	}
}

// FuzzSSHInjection: whatever user name and key ID a client chooses, and
// wherever sshd cuts the message after the source, a line names the
// client's own address or is malformed.
func FuzzSSHInjection(f *testing.F) {
	f.Add("alice", "evil from 10.0.0.1", -1)
	f.Add("alice", "evil from 10.0.0.1 port 22", -1)
	f.Add("alice", "evil from 10.0.0.1 port 22 ssh2", 47)
	f.Add("alice", "evil from 10.0.0.1 port 22 ssh2: RSA SHA256:eA", -1)
	f.Add("x from 10.0.0.1 port 22 ssh2: RSA-CERT ID y", "z", -1)
	f.Add("from 10.0.0.1", "", -1)
	f.Fuzz(func(t *testing.T, user, extra string, cut int) {
		checkInjection(t, user, extra, cut)
	})
}

// TestCertificateIDNeverSighted: a client failing again and again with a
// certificate whose key ID names 10.0.0.1 is sighted as itself, never as
// 10.0.0.1, and every line it makes ambiguous is counted as skipped.
func TestCertificateIDNeverSighted(t *testing.T) {
	e, err := NewRulesEngine(BuiltinRules(), EngineOptions{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	const h = "Nov 28 12:00:01 web-1 sshd[1]: Failed publickey for alice from 198.51.100.4 port 52311 ssh2: ED25519-CERT SHA256:YWJj ID "
	ids := []string{
		"evil from 10.0.0.1",
		"evil from 10.0.0.1 port 22",
		"evil from 10.0.0.1 port 22 ssh2",
		"evil from 10.0.0.1 port 22 ssh2: ED25519 SHA256:eA",
	}
	ambiguous := 0
	var got []intel.Sighting
	for i := range 40 {
		line := h + ids[i%len(ids)] + " (serial 7) CA ED25519 SHA256:ZGVm"
		if i%len(ids) == 2 {
			line = h + ids[i%len(ids)] // cut by syslog right after the ID's "ssh2"
		}
		if i%len(ids) >= 2 {
			ambiguous++
		}
		e.Process([]byte(line), func(s intel.Sighting) { got = append(got, s) })
	}
	if len(got) == 0 {
		t.Fatal("no sighting of 198.51.100.4")
	}
	for _, s := range got {
		if s.Indicator.Value != injSrc {
			t.Fatalf("sighting of %s, want only %s", s.Indicator.Value, injSrc)
		}
	}
	if st := e.Stats(); st.Skipped != uint64(ambiguous) {
		t.Fatalf("skipped %d lines, want the %d ambiguous ones", st.Skipped, ambiguous)
	}
}
