package detectors

import (
	"fmt"
	"testing"
	"time"
)

// mixedLog is a generated auth.log: mostly other programs and ordinary
// sshd chatter, one line in ten a failure from one of 1000 addresses.
func mixedLog(n int) []string {
	lines := make([]string, 0, n)
	for i := range n {
		stamp := base.Add(time.Duration(i) * 10 * time.Millisecond).Format(time.Stamp)
		var l string
		switch i % 10 {
		case 0:
			l = fmt.Sprintf("%s web-1 sshd[%d]: Failed password for root from 198.51.%d.%d port %d ssh2", stamp, 1000+i%5000, i%4, i%250, 1024+i%60000)
		case 1:
			l = fmt.Sprintf("%s web-1 sshd[%d]: Connection closed by authenticating user root 203.0.113.%d port %d [preauth]", stamp, 1000+i%5000, i%250, 1024+i%60000)
		case 2:
			l = fmt.Sprintf("%s web-1 sshd[%d]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.%d", stamp, 1000+i%5000, i%250)
		case 3, 4:
			l = fmt.Sprintf("%s web-1 CRON[%d]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)", stamp, 1000+i%5000)
		case 5:
			l = fmt.Sprintf("%s web-1 sshd[%d]: Invalid user user%d from 2001:db8::%x port %d", stamp, 1000+i%5000, i%100, i%500, 1024+i%60000)
		default:
			l = fmt.Sprintf("%s web-1 kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC=192.0.2.%d DST=192.0.2.1 LEN=40 PROTO=TCP SPT=%d DPT=23", stamp, i%250, 1024+i%60000)
		}
		lines = append(lines, l)
	}
	return lines
}

func BenchmarkFeed(b *testing.B) {
	lines := mixedLog(100000)
	var bytes int64
	for _, l := range lines {
		bytes += int64(len(l)) + 1
	}
	e := newTestEngine(b, DefaultSSHRule(), EngineOptions{})
	b.SetBytes(bytes / int64(len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		e.Feed(lines[i%len(lines)])
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
	if st := e.Stats(); b.N >= 1000 && (st.Matched < st.Lines/6 || st.Fired == 0) {
		b.Fatalf("the generated log did not exercise the rule: %+v", st)
	}
}
