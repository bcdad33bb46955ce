package testnet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// A mesh of hundreds of nodes on two cores is still busy when it has
// formed: edges apply the last admissions, persist their state, and
// GossipSub settles its meshes. An attack replayed then measures that
// backlog, not the mesh. Above SimProfileAbove nodes, the brute force
// waits first for the machine to settle: until at least settleIdle of
// its CPU time was idle over a settleWindow, or settleMax passed. The
// report says how long it waited (Report.SettleMs).
const (
	settleIdle   = 0.5
	settleWindow = time.Second
	settleMax    = time.Minute
)

// cpuTimes returns the machine's idle and total CPU time from
// /proc/stat's first line, in clock ticks.
func cpuTimes() (idle, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("settle: %w", err)
	}
	return parseCPUTimes(b)
}

// parseCPUTimes reads the "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal ...; idle counts idle and iowait.
func parseCPUTimes(b []byte) (idle, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, fmt.Errorf("settle: /proc/stat starts %q, want the cpu line", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("settle: /proc/stat cpu field %d %q: %w", i+1, v, err)
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, nil
}

// settle waits until the share of idle CPU time over a window reaches
// want, or max passes, or ctx ends; it returns how long it waited. A
// machine whose CPU times cannot be read is taken as settled.
func settle(ctx context.Context, read func() (idle, total uint64, err error), window, max time.Duration, want float64) time.Duration {
	start := time.Now()
	idle0, total0, err := read()
	if err != nil {
		return 0
	}
	t := time.NewTicker(window)
	defer t.Stop()
	for time.Since(start) < max {
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-t.C:
		}
		idle, total, err := read()
		if err != nil {
			return time.Since(start)
		}
		if total > total0 && float64(idle-idle0)/float64(total-total0) >= want {
			return time.Since(start)
		}
		idle0, total0 = idle, total
	}
	return time.Since(start)
}

// settleMesh is settle on this machine for a mesh of nodes: nothing to
// wait for at or below SimProfileAbove nodes.
func settleMesh(ctx context.Context, nodes int) time.Duration {
	if nodes <= SimProfileAbove {
		return 0
	}
	return settle(ctx, cpuTimes, settleWindow, settleMax, settleIdle)
}
