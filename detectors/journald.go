package detectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func init() { RegisterSource("journald", newJournaldSource) }

// newJournaldSource follows the journal when the section enables it.
func newJournaldSource(c Config) (Source, error) {
	if !c.Journald.Enabled {
		return nil, nil
	}
	return &JournaldSource{Matches: c.Journald.Matches}, nil
}

// ErrJournalctlMissing is returned by JournaldSource.Run when the
// journalctl program is not installed (a system without systemd).
var ErrJournalctlMissing = errors.New("journald source: journalctl not found")

// killDelay is how long a journal command has to end after SIGTERM.
const killDelay = 2 * time.Second

// DefaultJournalMaxEntryBytes bounds one JSON entry of journalctl's output.
const DefaultJournalMaxEntryBytes = 64 << 10

// JournaldSource follows the systemd journal through
// "journalctl -o json --follow --lines=0", from the moment it starts, and
// turns every entry into the line "TIMESTAMP HOST IDENT[PID]: MESSAGE"
// that the parsers read. TIMESTAMP is __REALTIME_TIMESTAMP in RFC 3339
// (UTC, microseconds), HOST is _HOSTNAME, IDENT is SYSLOG_IDENTIFIER (or
// _COMM), PID is _PID (or SYSLOG_PID). A MESSAGE that is not UTF-8, which
// journalctl writes as an array of bytes, is passed on as those bytes.
//
// SYSLOG_IDENTIFIER is chosen by the program that logs (logger -t sshd);
// filter on a trusted field, one that journald itself sets, such as
// _SYSTEMD_UNIT=ssh.service, to count only what sshd wrote.
//
// Set the fields before Run; do not copy a JournaldSource after first use.
type JournaldSource struct {
	// Matches are journal matches, "FIELD=VALUE" (e.g.
	// "_SYSTEMD_UNIT=ssh.service"), or "+" between groups; journalctl ORs
	// matches on the same field and ANDs different fields. None: every
	// entry.
	Matches []string
	// Command is the program and its arguments (default: journalctl -o
	// json --follow --lines=0 --no-pager); Matches are appended to it.
	// Tests substitute a program that prints journal JSON.
	Command []string
	// MaxEntryBytes bounds one JSON entry (default 64 KiB); longer ones
	// are skipped and counted as Malformed. Lines are further bounded by
	// MaxLineBytes (default 8 KiB): a longer message is cut and counted.
	MaxEntryBytes int
	MaxLineBytes  int

	entries, lines, cut, malformed, noMessage atomic.Uint64
}

var _ Source = (*JournaldSource)(nil)

// JournaldStats counts what a JournaldSource did.
type JournaldStats struct {
	Entries   uint64 // JSON entries read
	Lines     uint64 // lines passed on
	Cut       uint64 // lines cut to MaxLineBytes
	Malformed uint64 // entries that are not JSON objects, or too long; skipped
	NoMessage uint64 // entries without a MESSAGE (or one journalctl left out as too large); skipped
}

// Stats returns the source's counters.
func (j *JournaldSource) Stats() JournaldStats {
	return JournaldStats{
		Entries:   j.entries.Load(),
		Lines:     j.lines.Load(),
		Cut:       j.cut.Load(),
		Malformed: j.malformed.Load(),
		NoMessage: j.noMessage.Load(),
	}
}

// validMatch reports whether m is a journal match journalctl cannot take
// for an option: "+", or FIELD=VALUE with FIELD of A-Z, 0-9 and _.
func validMatch(m string) bool {
	if m == "+" {
		return true
	}
	i := 0
	for ; i < len(m) && m[i] != '='; i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return i > 0 && i < len(m) && !isDigit(m[0])
}

// Run starts the command and passes its entries on until ctx ends, then
// stops the command (SIGTERM to its process group, SIGKILL after two
// seconds) and waits for it. It returns ErrJournalctlMissing when the
// program is not installed, nil when the command ends by itself with
// success, and an error with the end of its standard error otherwise.
func (j *JournaldSource) Run(ctx context.Context, out chan<- string) error {
	for i, m := range j.Matches {
		if !validMatch(m) {
			return fmt.Errorf("journald source: matches[%d] %q: want FIELD=VALUE or +", i, m)
		}
	}
	args := j.Command
	if len(args) == 0 {
		args = []string{"journalctl", "-o", "json", "--follow", "--lines=0", "--no-pager"}
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		if filepath.Base(args[0]) == "journalctl" {
			return fmt.Errorf("%w: %v", ErrJournalctlMissing, err)
		}
		return fmt.Errorf("journald source: %w", err)
	}
	maxEntry := j.MaxEntryBytes
	if maxEntry <= 0 {
		maxEntry = DefaultJournalMaxEntryBytes
	}
	maxLine := j.MaxLineBytes
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("journald source: %w", err)
	}
	defer pr.Close()
	stderr := &tailBuffer{max: 1 << 10}
	cmd := exec.Command(path, append(args[1:len(args):len(args)], j.Matches...)...)
	cmd.Stdout, cmd.Stderr = pw, stderr
	cmd.WaitDelay = killDelay
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("journald source: start %s: %w", args[0], err)
	}
	pw.Close() // the child has its copy

	// On cancel, stop the child's process group, unblock the reader, and
	// kill the group if it has not ended after killDelay. Once the child
	// has been waited for, its pid may be reused: no signal is sent after
	// that.
	var (
		stopMu  sync.Mutex
		waited  bool
		reaped  = make(chan struct{})
		stopped = make(chan struct{})
	)
	signal := func(fn func(*exec.Cmd)) {
		stopMu.Lock()
		defer stopMu.Unlock()
		if !waited {
			fn(cmd)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		signal(terminate)
		pr.Close()
		t := time.NewTimer(killDelay)
		defer t.Stop()
		select {
		case <-t.C:
			signal(kill)
		case <-reaped:
		}
	})

	var ent journalEntry
	line := make([]byte, 0, 512)
	_, readErr := ReadLines(pr, maxEntry, func(b []byte) {
		if ctx.Err() != nil {
			return
		}
		j.entries.Add(1)
		if len(b) >= maxEntry {
			j.malformed.Add(1) // cut by ReadLines: not a whole entry
			return
		}
		var ok bool
		line, ok = j.convert(&ent, b, line[:0], maxLine)
		if !ok {
			return
		}
		select {
		case out <- string(line):
			j.lines.Add(1)
		case <-ctx.Done():
		}
	})
	werr := cmd.Wait()
	stopMu.Lock()
	waited = true
	stopMu.Unlock()
	close(reaped)
	if !stop() {
		<-stopped // ctx ended: the stopper ran or is running
	}
	if ctx.Err() != nil {
		return nil
	}
	if werr != nil {
		if msg := bytes.TrimSpace(stderr.Bytes()); len(msg) > 0 {
			return fmt.Errorf("journald source: %s: %w: %s", args[0], werr, msg)
		}
		return fmt.Errorf("journald source: %s: %w", args[0], werr)
	}
	if readErr != nil {
		return fmt.Errorf("journald source: read: %w", readErr)
	}
	return nil
}

// journalEntry holds the fields of one entry the source uses. Each is a
// string, an array of bytes (not UTF-8), an array of values (a field
// given more than once) or null (too large).
type journalEntry struct {
	Realtime   json.RawMessage `json:"__REALTIME_TIMESTAMP"`
	Hostname   json.RawMessage `json:"_HOSTNAME"`
	Identifier json.RawMessage `json:"SYSLOG_IDENTIFIER"`
	Comm       json.RawMessage `json:"_COMM"`
	PID        json.RawMessage `json:"_PID"`
	SyslogPID  json.RawMessage `json:"SYSLOG_PID"`
	Message    json.RawMessage `json:"MESSAGE"`
}

// convert turns one JSON entry into a line appended to dst.
func (j *JournaldSource) convert(ent *journalEntry, b, dst []byte, maxLine int) ([]byte, bool) {
	*ent = journalEntry{}
	if err := json.Unmarshal(b, ent); err != nil {
		j.malformed.Add(1)
		return dst, false
	}
	msg, ok := journalValue(ent.Message)
	if !ok {
		j.noMessage.Add(1)
		return dst, false
	}
	if us, ok := journalValue(ent.Realtime); ok {
		if n, err := strconv.ParseInt(string(us), 10, 64); err == nil {
			dst = time.UnixMicro(n).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
			dst = append(dst, ' ')
		}
	}
	host, _ := journalValue(ent.Hostname)
	dst = appendWord(dst, host)
	dst = append(dst, ' ')
	ident, ok := journalValue(ent.Identifier)
	if !ok {
		ident, ok = journalValue(ent.Comm)
	}
	if ok && len(ident) > 0 {
		dst = appendWord(dst, ident)
		pid, ok := journalValue(ent.PID)
		if !ok {
			pid, ok = journalValue(ent.SyslogPID)
		}
		if ok && allDigits(pid) {
			dst = append(dst, '[')
			dst = append(dst, pid...)
			dst = append(dst, ']')
		}
		dst = append(dst, ": "...)
	}
	dst = appendClean(dst, msg)
	if len(dst) > maxLine {
		dst = dst[:maxLine]
		j.cut.Add(1)
	}
	return dst, true
}

// appendWord appends b as one word: spaces and control bytes become "_",
// and an empty b is "-".
func appendWord(dst, b []byte) []byte {
	if len(b) == 0 {
		return append(dst, '-')
	}
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// journalValue decodes one field of journalctl's JSON: a string, an array
// of bytes, or an array of such values, of which the first is taken.
func journalValue(raw json.RawMessage) ([]byte, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []byte(s), true
	case '[':
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil || len(arr) == 0 {
			return nil, false
		}
		if a := bytes.TrimSpace(arr[0]); len(a) > 0 && (a[0] == '"' || a[0] == '[') {
			return journalValue(arr[0]) // a field given more than once
		}
		out := make([]byte, len(arr))
		for i, v := range arr {
			n, err := strconv.ParseUint(string(v), 10, 8)
			if err != nil {
				return nil, false
			}
			out[i] = byte(n)
		}
		return out, true
	}
	return nil, false // null: too large for journalctl to print
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.b)
}
