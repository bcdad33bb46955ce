package testnet

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
)

// SSHBruteForceLog returns classic syslog auth.log lines for a
// password-guessing attack of failures attempts from attacker against host,
// one second apart and ending at end, mixed with the lines a busy host logs
// besides (cron, a benign successful login, a disconnect).
func SSHBruteForceLog(host string, attacker netip.Addr, failures int, end time.Time) []byte {
	var b bytes.Buffer
	users := []string{"root", "admin", "ubuntu", "test", "oracle", "postgres"}
	start := end.Add(-time.Duration(failures-1) * time.Second)
	for i := range failures {
		ts := start.Add(time.Duration(i) * time.Second).Format(time.Stamp)
		pid := 20000 + i
		port := 40000 + i*7
		if i%3 == 1 {
			fmt.Fprintf(&b, "%s %s CRON[%d]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)\n", ts, host, pid+1)
		}
		u := users[i%len(users)]
		if i%4 == 2 {
			fmt.Fprintf(&b, "%s %s sshd[%d]: Invalid user %s from %s port %d\n", ts, host, pid, u, attacker, port)
			fmt.Fprintf(&b, "%s %s sshd[%d]: Failed password for invalid user %s from %s port %d ssh2\n", ts, host, pid, u, attacker, port)
			continue
		}
		fmt.Fprintf(&b, "%s %s sshd[%d]: Failed password for %s from %s port %d ssh2\n", ts, host, pid, u, attacker, port)
	}
	ts := end.Format(time.Stamp)
	fmt.Fprintf(&b, "%s %s sshd[19999]: Accepted publickey for deploy from 198.51.100.10 port 50022 ssh2: ED25519 SHA256:Zm9vYmFy\n", ts, host)
	return b.Bytes()
}
