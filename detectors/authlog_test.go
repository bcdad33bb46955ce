package detectors

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// authLogTruth says which addresses of a generated auth.log attack.
type authLogTruth struct {
	lines     int
	attackers map[netip.Addr]bool
	benign    map[netip.Addr]bool
}

// writeAuthLog writes a deterministic auth.log of n lines to path: mostly
// other daemons, about 8 % sshd failures, three quarters of them from a
// few hundred attackers working in bursts (a handful active at once), the
// rest one-off failures of benign users from distinct addresses.
func writeAuthLog(tb testing.TB, path string, n int) authLogTruth {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	truth := authLogTruth{lines: n, attackers: map[netip.Addr]bool{}, benign: map[netip.Addr]bool{}}
	start := time.Date(2024, 11, 28, 0, 0, 0, 0, time.UTC)
	const step = 50 * time.Millisecond // 1,000,000 lines span 14 hours
	const active, budget = 8, 200
	nextAttacker := 0
	attacker := func() netip.Addr {
		i := nextAttacker
		nextAttacker++
		if i%10 == 9 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xba, 0xd0, 14: byte(i >> 8), 15: byte(i)})
		}
		return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	type att struct {
		addr netip.Addr
		left int
		port int
	}
	var live [active]att
	for i := range live {
		live[i] = att{attacker(), budget, 30000}
	}
	benignN := 0
	users := []string{"admin", "test", "oracle", "postgres", "ubuntu", "git", "user", "pi", "ftp", "guest", "deploy", "jenkins"}
	var line []byte
	for i := range n {
		ts := start.Add(time.Duration(i) * step)
		line = ts.AppendFormat(line[:0], time.Stamp)
		line = append(line, " web-1 "...)
		pid := strconv.Itoa(1000 + rng.IntN(60000))
		r := rng.IntN(1000)
		switch {
		case r < 80: // an sshd failure
			if rng.IntN(4) == 0 {
				benignN++
				a := netip.AddrFrom4([4]byte{10, byte(benignN >> 16), byte(benignN >> 8), byte(benignN)})
				truth.benign[a] = true
				line = fmt.Appendf(line, "sshd[%s]: Failed password for alice from %s port %d ssh2", pid, a, 1024+rng.IntN(60000))
				break
			}
			k := rng.IntN(active)
			at := &live[k]
			truth.attackers[at.addr] = true
			at.port++
			switch rng.IntN(3) {
			case 0:
				line = fmt.Appendf(line, "sshd[%s]: Failed password for root from %s port %d ssh2", pid, at.addr, at.port)
			case 1:
				line = fmt.Appendf(line, "sshd[%s]: Invalid user %s from %s port %d", pid, users[rng.IntN(len(users))], at.addr, at.port)
			default:
				line = fmt.Appendf(line, "sshd[%s]: Failed password for invalid user %s from %s port %d ssh2", pid, users[rng.IntN(len(users))], at.addr, at.port)
			}
			if at.left--; at.left == 0 {
				*at = att{attacker(), budget, 30000}
			}
		case r < 300:
			line = fmt.Appendf(line, "CRON[%s]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)", pid)
		case r < 450:
			line = fmt.Appendf(line, "systemd[1]: Started session-%d.scope - Session %d of User deploy.", i, i)
		case r < 550:
			line = fmt.Appendf(line, "sshd[%s]: Accepted publickey for deploy from 192.0.2.%d port %d ssh2: ED25519 SHA256:Zk4cQ0vM1yq8kCwGmJ3Xxq1", pid, rng.IntN(250), 1024+rng.IntN(60000))
		case r < 650:
			line = fmt.Appendf(line, "sshd[%s]: pam_unix(sshd:session): session closed for user deploy", pid)
		case r < 750:
			line = fmt.Appendf(line, "postfix/smtpd[%s]: connect from mail-oi1-f171.example.com[209.85.167.%d]", pid, rng.IntN(250))
		case r < 850:
			line = fmt.Appendf(line, "sudo[%s]:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl restart app", pid)
		case r < 920:
			line = fmt.Appendf(line, "kernel: [%d.%06d] audit: type=1400 audit(1700000000.000:%d): apparmor=\"DENIED\" operation=\"open\" profile=\"snap\"", i/100, i%1000000, i)
		default:
			line = fmt.Appendf(line, "systemd-logind[%s]: New session %d of user deploy.", pid, i)
		}
		line = append(line, '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	// An attacker retired with few failures left in its last burst may
	// not have crossed the threshold; only count those that had a full
	// burst budget spent. Live ones at the end are checked too: each has
	// had many failures by then unless it just started.
	for _, at := range live {
		if at.left > budget-20 {
			delete(truth.attackers, at.addr)
		}
	}
	return truth
}

// runFile runs the full built-in pack over path and returns the sightings
// per rule and address.
func runFile(tb testing.TB, path string) (map[string]map[netip.Addr]int, EngineStats, LineStats) {
	tb.Helper()
	eng, err := NewRulesEngine(BuiltinRules(), EngineOptions{Now: fixedNow})
	if err != nil {
		tb.Fatal(err)
	}
	found := map[string]map[netip.Addr]int{}
	emit := func(s intel.Sighting) {
		m := found[s.Detector]
		if m == nil {
			m = map[netip.Addr]int{}
			found[s.Detector] = m
		}
		m[netip.MustParseAddr(s.Indicator.Value)]++
	}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	ls, err := ReadLines(f, 0, func(l []byte) { eng.Process(l, emit) })
	if err != nil {
		tb.Fatal(err)
	}
	return found, eng.Stats(), ls
}

func checkAuthLog(tb testing.TB, truth authLogTruth, found map[string]map[netip.Addr]int) {
	tb.Helper()
	for a := range truth.attackers {
		if found["ssh-bruteforce"][a] == 0 {
			tb.Errorf("attacker %s not found", a)
		}
	}
	for rule, m := range found {
		for a := range m {
			if truth.benign[a] {
				tb.Errorf("benign %s flagged by %s", a, rule)
			}
			if !truth.attackers[a] && rule == "ssh-bruteforce" && a.Is4() && a.As4()[0] == 10 {
				tb.Errorf("unexpected %s flagged by %s", a, rule)
			}
		}
	}
}

// TestGeneratedAuthLog runs the pack over a 100,000-line generated log.
func TestGeneratedAuthLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	truth := writeAuthLog(t, path, 100000)
	found, st, ls := runFile(t, path)
	if ls.Lines != uint64(truth.lines) || len(truth.attackers) < 20 || len(truth.benign) < 1000 {
		t.Fatalf("generator: %d lines, %d attackers, %d benign", ls.Lines, len(truth.attackers), len(truth.benign))
	}
	checkAuthLog(t, truth, found)
	if st.Skipped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestWriteAuthLog writes the benchmark's 1,000,000-line log to the path
// in MESHWARD_AUTHLOG, for timing `meshward rules test` as a process.
func TestWriteAuthLog(t *testing.T) {
	path := os.Getenv("MESHWARD_AUTHLOG")
	if path == "" {
		t.Skip("set MESHWARD_AUTHLOG to a path to write the benchmark log")
	}
	truth := writeAuthLog(t, path, 1000000)
	t.Logf("wrote %s: %d attackers, %d benign", path, len(truth.attackers), len(truth.benign))
}

// BenchmarkAuthLogPack runs the whole built-in pack over a generated
// 1,000,000-line auth.log read from disk, on one goroutine.
func BenchmarkAuthLogPack(b *testing.B) {
	path := filepath.Join(b.TempDir(), "auth.log")
	truth := writeAuthLog(b, path, 1000000)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	var lines uint64
	start := time.Now()
	for b.Loop() {
		found, _, ls := runFile(b, path)
		lines += ls.Lines
		b.StopTimer()
		checkAuthLog(b, truth, found)
		b.StartTimer()
	}
	b.ReportMetric(float64(lines)/time.Since(start).Seconds(), "lines/s")
}

// TestSpoofedSourcesStayBounded feeds 1,000,000 failures from distinct
// addresses: state stays under the cap and the heap does not follow the
// flood.
func TestSpoofedSourcesStayBounded(t *testing.T) {
	n := 1000000
	if testing.Short() {
		n = 100000
	}
	const limit = 10000
	eng, err := NewRulesEngine(BuiltinRules(), EngineOptions{MaxSources: limit, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var line []byte
	feed := func(i int) {
		line = append(line[:0], "Nov 28 12:00:01 web-1 sshd[7]: Invalid user x from "...)
		line = netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}).AppendTo(line)
		line = append(line, " port 4242"...)
		eng.Process(line, func(intel.Sighting) { t.Fatal("a single failure fired") })
	}
	for i := range 2 * limit { // reach the cap before measuring
		feed(i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 2 * limit; i < n; i++ {
		feed(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := eng.Stats()
	for _, r := range st.Rules {
		if r.Sources > limit {
			t.Errorf("rule %s tracks %d sources, cap %d", r.Rule, r.Sources, limit)
		}
	}
	if st.Evicted < uint64(n-2*limit) || st.Cap != limit {
		t.Errorf("stats: evicted %d, cap %d", st.Evicted, st.Cap)
	}
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use %d -> %d bytes (%+d) after %d spoofed sources; %d evicted", before.HeapInuse, after.HeapInuse, growth, n, st.Evicted)
	if growth > 32<<20 {
		t.Errorf("heap grew by %d bytes under a spoofed flood", growth)
	}
}
