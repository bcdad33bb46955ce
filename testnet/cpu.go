package testnet

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// processCPU returns the CPU time (user and system) process pid has
// spent so far, from /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	return parseProcessCPU(b)
}

// parseProcessCPU reads utime and stime, the 14th and 15th fields of a
// /proc/PID/stat line. The second field, the command's name in
// parentheses, may hold spaces and parentheses: the fields are counted
// from its last ')'.
func parseProcessCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time: stat line %.40q has no command name", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is the 3rd field (state); utime and stime are the 14th and 15th.
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time: stat line has %d fields past the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time: stat field %q: %w", v, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// cpuMeter sums the CPU time of a mesh's processes between two reads.
type cpuMeter struct {
	pids  []int
	start time.Duration
	err   error
}

// startCPU reads the CPU time pids spent so far.
func startCPU(pids []int) *cpuMeter {
	m := &cpuMeter{pids: pids}
	m.start, m.err = m.read()
	return m
}

func (m *cpuMeter) read() (time.Duration, error) {
	var sum time.Duration
	for _, pid := range m.pids {
		d, err := processCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// ms returns the CPU time the processes spent since startCPU, in
// milliseconds; -1 when it could not be read (no /proc).
func (m *cpuMeter) ms() float64 {
	if m.err != nil {
		return -1
	}
	end, err := m.read()
	if err != nil {
		return -1
	}
	return ms(end - m.start)
}
