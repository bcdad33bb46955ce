package testnet

import (
	"fmt"
	"os"
)

// AppendAuthLog appends lines, verbatim, to node i's auth.log, which the
// node's detectors tail from the start: what the host's syslog daemon
// would write there. Each line must end in "\n".
func (m *Mesh) AppendAuthLog(i int, lines []byte) error {
	if i < 0 || i >= len(m.logs) {
		return fmt.Errorf("testnet: no node %d", i)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.OpenFile(m.logs[i], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testnet: open auth.log: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(lines); err != nil {
		return fmt.Errorf("testnet: write auth.log: %w", err)
	}
	return nil
}
