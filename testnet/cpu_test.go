package testnet

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcessCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 70.
	line := "4242 (mesh (ward) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 70 0 0 20 0 12 0 100 0 0\n"
	d, err := parseProcessCPU([]byte(line))
	if err != nil || d != 320*clockTick {
		t.Fatalf("cpu %s, %v: want %s", d, err, 320*clockTick)
	}
	for _, c := range []struct{ line, want string }{
		{"4242 mesh S 1", "no command name"},
		{"4242 (mesh) S 1 2 3", "fields past the command name"},
		{"4242 (mesh) S 1 4242 4242 0 -1 4194560 1000 0 0 0 2x5 70 0", `stat field "2x5"`},
	} {
		if _, err := parseProcessCPU([]byte(c.line)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %q", c.line, err, c.want)
		}
	}
}

// The meter counts the CPU a process spends between its two reads.
func TestCPUMeterCountsWork(t *testing.T) {
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	m := startCPU([]int{os.Getpid()})
	// Spin until the process's own count moved by at least 5 ticks.
	start, _ := processCPU(os.Getpid())
	deadline := time.Now().Add(time.Minute)
	for x := 0; ; x++ {
		if x%1_000_000 == 0 {
			if now, _ := processCPU(os.Getpid()); now-start >= 5*clockTick || time.Now().After(deadline) {
				break
			}
		}
	}
	if got := m.ms(); got < 50 {
		t.Fatalf("the meter counted %v ms for at least 50 ms of work", got)
	}
	if got := startCPU([]int{-1}).ms(); got != -1 {
		t.Fatalf("a meter over a process that does not exist read %v, want -1", got)
	}
}
