package testnet

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseCPUTimes(t *testing.T) {
	idle, total, err := parseCPUTimes([]byte("cpu  100 5 50 800 20 1 2 0 0 0\ncpu0 50 2 25 400 10 0 1 0 0 0\n"))
	if err != nil || idle != 820 || total != 978 {
		t.Fatalf("idle %d total %d err %v, want 820 978", idle, total, err)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5"} {
		if _, _, err := parseCPUTimes([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, _, err := cpuTimes(); err != nil {
		t.Skipf("this machine's /proc/stat: %v", err)
	}
}

// settle waits out the busy windows and returns at the first idle one;
// it gives up after max on a machine that stays busy, and takes one
// whose times cannot be read as settled.
func TestSettle(t *testing.T) {
	// Each read advances 100 ticks: the first three windows busy (10%
	// idle), then idle (90%).
	var reads int
	var idle, total uint64
	read := func() (uint64, uint64, error) {
		reads++
		if reads > 1 {
			total += 100
			if reads <= 4 {
				idle += 10
			} else {
				idle += 90
			}
		}
		return idle, total, nil
	}
	settle(context.Background(), read, time.Millisecond, time.Minute, 0.5)
	if reads != 5 {
		t.Fatalf("settled after %d reads, want 5 (the first idle window)", reads)
	}

	busy := func() (uint64, uint64, error) { total += 100; idle += 1; return idle, total, nil }
	if d := settle(context.Background(), busy, time.Millisecond, 50*time.Millisecond, 0.5); d < 50*time.Millisecond {
		t.Fatalf("a busy machine settled after %s, want the whole 50ms", d)
	}
	broken := func() (uint64, uint64, error) { return 0, 0, errors.New("no /proc") }
	if d := settle(context.Background(), broken, time.Hour, time.Hour, 0.5); d != 0 {
		t.Fatalf("waited %s on a machine whose times cannot be read", d)
	}
}
