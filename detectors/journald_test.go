//go:build unix

package detectors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// journalHelperEnv makes the test binary act as journalctl: see
// TestJournalHelperProcess.
const journalHelperEnv = "MESHWARD_TEST_JOURNAL_HELPER"

// journalLines is what the fake journalctl prints: an ordinary entry, a
// MESSAGE as bytes (not UTF-8), a field given twice, an entry without
// MESSAGE, junk, and an entry whose identifier has a space.
var journalLines = []string{
	`{"__REALTIME_TIMESTAMP":"1732795201123456","_HOSTNAME":"web-1","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","MESSAGE":"Failed password for root from 203.0.113.7 port 52311 ssh2","_SYSTEMD_UNIT":"ssh.service"}`,
	`{"__REALTIME_TIMESTAMP":"1732795202000000","_HOSTNAME":"web-1","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","MESSAGE":[73,110,118,97,108,105,100,32,117,115,101,114,32,255,254,32,102,114,111,109,32,50,48,51,46,48,46,49,49,51,46,55,32,112,111,114,116,32,49]}`,
	`{"__REALTIME_TIMESTAMP":"1732795203000000","_HOSTNAME":"web-1","_COMM":"sshd","SYSLOG_PID":"7","MESSAGE":["first\nline","second"]}`,
	`{"__REALTIME_TIMESTAMP":"1732795204000000","_HOSTNAME":"web-1","SYSLOG_IDENTIFIER":"sshd","MESSAGE":null}`,
	`not json`,
	`{"MESSAGE":"bare","SYSLOG_IDENTIFIER":"my app","_PID":"x1"}`,
}

var journalWant = []string{
	"2024-11-28T12:00:01.123456Z web-1 sshd[4242]: Failed password for root from 203.0.113.7 port 52311 ssh2",
	"2024-11-28T12:00:02.000000Z web-1 sshd[4242]: Invalid user \xff\xfe from 203.0.113.7 port 1",
	"2024-11-28T12:00:03.000000Z web-1 sshd[7]: first line",
	"- my_app: bare",
}

// TestJournalHelperProcess is not a test: it is the fake journalctl that
// the tests run (os.Args[0] with journalHelperEnv set).
func TestJournalHelperProcess(t *testing.T) {
	mode := os.Getenv(journalHelperEnv)
	if mode == "" {
		t.Skip("only a helper process")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	fmt.Fprintf(os.Stderr, "args %s\n", strings.Join(args, " "))
	switch mode {
	case "follow", "exit":
		for _, l := range journalLines {
			fmt.Println(l)
		}
		if mode == "exit" {
			os.Exit(0)
		}
		time.Sleep(time.Hour) // follow: until killed
	case "fail":
		fmt.Fprintln(os.Stderr, "Failed to add match 'BOGUS': Invalid argument")
		os.Exit(1)
	case "stubborn":
		// Ignores SIGTERM; must be killed.
		signalIgnoreTerm()
		fmt.Println(journalLines[0])
		time.Sleep(time.Hour)
	}
	os.Exit(2)
}

func signalIgnoreTerm() { signal.Ignore(syscall.SIGTERM) }

func helperCommand(t *testing.T, mode string) []string {
	t.Helper()
	t.Setenv(journalHelperEnv, mode)
	return []string{os.Args[0], "-test.run=^TestJournalHelperProcess$", "--"}
}

type journalRun struct {
	lines  chan string
	cancel context.CancelFunc
	done   chan error
}

func startJournal(t *testing.T, src *JournaldSource) *journalRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &journalRun{lines: make(chan string, 64), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx, r.lines) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func (r *journalRun) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-r.lines:
			if got != w {
				t.Fatalf("got line %q, want %q", got, w)
			}
		case err := <-r.done:
			t.Fatalf("Run returned %v while waiting for %q", err, w)
		case <-time.After(20 * time.Second):
			t.Fatalf("timed out waiting for %q", w)
		}
	}
}

func TestJournaldFollow(t *testing.T) {
	src := &JournaldSource{Command: helperCommand(t, "follow"), Matches: []string{"_SYSTEMD_UNIT=ssh.service", "+", "SYSLOG_IDENTIFIER=sshd"}}
	r := startJournal(t, src)
	r.expect(t, journalWant...)
	waitUntil(t, "every entry to be counted", func() bool { st := src.Stats(); return st.Entries == uint64(len(journalLines)) && st.Lines == 4 })
	if st := src.Stats(); st.Lines != 4 || st.Malformed != 1 || st.NoMessage != 1 || st.Cut != 0 {
		t.Fatalf("stats %+v", st)
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestJournaldLinesParse(t *testing.T) {
	for _, l := range journalWant[:2] {
		var ev Event
		if res := parseLine(l, &ev); res != resMatched || ev.Src.String() != "203.0.113.7" {
			t.Errorf("%q parses as %v %+v", l, res, ev)
		}
	}
}

func TestJournaldExitsAndFails(t *testing.T) {
	src := &JournaldSource{Command: helperCommand(t, "exit")}
	lines := make(chan string, 64)
	if err := src.Run(t.Context(), lines); err != nil {
		t.Fatalf("a command that ends by itself: %v", err)
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4", len(lines))
	}

	src = &JournaldSource{Command: helperCommand(t, "fail"), Matches: []string{"BOGUS=1"}}
	err := src.Run(t.Context(), lines)
	if err == nil || !strings.Contains(err.Error(), "Invalid argument") || !strings.Contains(err.Error(), "args BOGUS=1") {
		t.Fatalf("failing command: %v", err)
	}

	for _, bad := range []string{"-f", "--output=cat", "lower=1", "=x", "NOVALUE", "1X=2"} {
		src = &JournaldSource{Command: helperCommand(t, "exit"), Matches: []string{bad}}
		if err := src.Run(t.Context(), lines); err == nil {
			t.Errorf("match %q accepted", bad)
		}
	}
}

func TestJournaldMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := (&JournaldSource{}).Run(t.Context(), make(chan string))
	if !errors.Is(err, ErrJournalctlMissing) {
		t.Fatalf("Run without journalctl: %v", err)
	}
	err = (&JournaldSource{Command: []string{"no-such-program-here"}}).Run(t.Context(), make(chan string))
	if err == nil || errors.Is(err, ErrJournalctlMissing) {
		t.Fatalf("Run with a missing command: %v", err)
	}
}

// alive reports whether pid is a process that has not ended (a zombie
// has ended).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestJournaldStopsProcessGroup(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	script := `echo $$ > "$0/sh.pid"; sleep 3600 & echo $! > "$0/sleep.pid"; echo '{"MESSAGE":"up","SYSLOG_IDENTIFIER":"t"}'; wait`
	src := &JournaldSource{Command: []string{"sh", "-c", script, dir}}
	r := startJournal(t, src)
	r.expect(t, "- t: up")
	var pids []int
	for _, name := range []string{"sh.pid", "sleep.pid"} {
		var pid int
		waitUntil(t, name, func() bool {
			b, err := os.ReadFile(filepath.Join(dir, name))
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return err == nil && pid > 0
		})
		pids = append(pids, pid)
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The shell was waited for; its child, in the same group, was stopped
	// too (and is reaped by init, so poll).
	for _, pid := range pids {
		waitUntil(t, fmt.Sprintf("process %d to end", pid), func() bool { return !alive(pid) })
	}
}

func TestJournaldKillsStubbornCommand(t *testing.T) {
	src := &JournaldSource{Command: helperCommand(t, "stubborn")}
	r := startJournal(t, src)
	r.expect(t, journalWant[0])
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		r.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return: SIGKILL was not sent")
	}
}

func TestJournaldBruteForceFires(t *testing.T) {
	src := &JournaldSource{Command: helperCommand(t, "exit")}
	// Five failures: the fake's first two entries, fed through twice and
	// once more.
	eng, err := NewRulesEngine(BuiltinRules(), EngineOptions{Now: func() time.Time { return time.UnixMicro(1732795210000000) }})
	if err != nil {
		t.Fatal(err)
	}
	var got []intel.Sighting
	for range 3 {
		if err := Run(t.Context(), src, eng, func(s intel.Sighting) { got = append(got, s) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0].Detector != "ssh-bruteforce" || got[0].Indicator.Value != "203.0.113.7" {
		t.Fatalf("sightings %+v; engine %+v", got, eng.Stats())
	}
}

func TestMultiSource(t *testing.T) {
	boom := errors.New("boom")
	out := make(chan string, 16)
	err := MultiSource{lineSource{lines: []string{"a", "b"}}, lineSource{lines: []string{"c"}}}.Run(t.Context(), out)
	if err != nil || len(out) != 3 {
		t.Fatalf("err %v, %d lines", err, len(out))
	}
	// A failing source stops one that would run forever.
	syslog := &SyslogSource{UDPAddr: "127.0.0.1:0"}
	done := make(chan error, 1)
	go func() {
		done <- MultiSource{syslog, lineSource{err: boom}}.Run(t.Context(), out)
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("MultiSource: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("MultiSource did not stop its other sources")
	}
	// Cancelling stops them all.
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		done <- MultiSource{&SyslogSource{UDPAddr: "127.0.0.1:0"}, &SyslogSource{TCPAddr: "127.0.0.1:0"}}.Run(ctx, out)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("MultiSource after cancel: %v", err)
	}
}

func BenchmarkJournalConvert(b *testing.B) {
	j := &JournaldSource{}
	var ent journalEntry
	in := []byte(journalLines[0])
	var line []byte
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		line, _ = j.convert(&ent, in, line[:0], DefaultMaxLineBytes)
	}
}
