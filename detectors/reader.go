package detectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// LineStats counts what ReadLines did.
type LineStats struct {
	Lines     uint64 // lines passed on
	Truncated uint64 // lines longer than the limit, cut to it
	Bytes     uint64 // bytes read
}

// ReadLines reads r to its end and calls fn for every line, without its
// newline (and carriage return). A line longer than maxLine bytes (0:
// DefaultMaxLineBytes) is cut to maxLine, passed on and counted; the rest
// of it is dropped. A last line without a newline is passed on. fn must
// not keep line: its bytes are reused. ReadLines does not allocate per
// line.
func ReadLines(r io.Reader, maxLine int, fn func(line []byte)) (LineStats, error) {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	var st LineStats
	buf := make([]byte, max(256<<10, 2*maxLine))
	start, end := 0, 0
	discard := false // dropping the rest of a cut line
	emit := func(b []byte) {
		b = bytes.TrimSuffix(b, []byte{'\r'})
		st.Lines++
		fn(b)
	}
	for {
		n, err := r.Read(buf[end:])
		end += n
		st.Bytes += uint64(n)
		for start < end {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			line := buf[start : start+i]
			start += i + 1
			if discard {
				discard = false
				continue
			}
			if len(line) > maxLine {
				st.Truncated++
				line = line[:maxLine]
			}
			emit(line)
		}
		if end-start >= maxLine && !discard {
			// No newline within the limit: cut here.
			st.Truncated++
			emit(buf[start : start+maxLine])
			start, discard = end, true
		}
		if discard {
			start = end // drop what was read of the cut line
		}
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		if err != nil {
			if end > 0 && !discard {
				emit(buf[:end])
			}
			if errors.Is(err, io.EOF) {
				return st, nil
			}
			return st, fmt.Errorf("read lines: %w", err)
		}
	}
}

// ReaderSource yields the lines of an io.Reader (standard input, a pipe)
// until its end. It is a one-shot source: Run returns nil at EOF.
type ReaderSource struct {
	R io.Reader
	// MaxLineBytes bounds a line (default 8 KiB); longer lines are cut
	// and counted.
	MaxLineBytes int

	lines, truncated atomic.Uint64
}

var _ Source = (*ReaderSource)(nil)

// Stats returns the lines emitted and the lines cut to MaxLineBytes.
func (s *ReaderSource) Stats() (lines, truncated uint64) {
	return s.lines.Load(), s.truncated.Load()
}

// Run reads R to its end. A read blocked in R is not interrupted by ctx
// (close R to stop it); lines are no longer sent once ctx ends.
func (s *ReaderSource) Run(ctx context.Context, out chan<- string) error {
	if s.R == nil {
		return errors.New("reader source: no reader")
	}
	errStop := errors.New("stopped")
	st, err := ReadLines(readerFunc(func(p []byte) (int, error) {
		if ctx.Err() != nil {
			return 0, errStop
		}
		return s.R.Read(p)
	}), s.MaxLineBytes, func(line []byte) {
		select {
		case out <- string(line):
			s.lines.Add(1)
		case <-ctx.Done():
		}
	})
	s.truncated.Store(st.Truncated)
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("reader source: %w", err)
	}
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
