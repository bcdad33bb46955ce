package detectors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// follow runs a FileSource on path and collects what it emits.
type follow struct {
	t     *testing.T
	src   *FileSource
	lines chan string
	done  chan error
	stop  context.CancelFunc
}

func startFollow(t *testing.T, src *FileSource) *follow {
	t.Helper()
	if src.PollInterval == 0 {
		src.PollInterval = 2 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(t.Context())
	f := &follow{t: t, src: src, lines: make(chan string, 10000), done: make(chan error, 1), stop: cancel}
	go func() { f.done <- src.Run(ctx, f.lines) }()
	t.Cleanup(func() { f.close() })
	return f
}

// close stops the source and returns its error.
func (f *follow) close() error {
	f.stop()
	select {
	case err := <-f.done:
		f.done <- err
		return err
	case <-time.After(10 * time.Second):
		f.t.Fatal("source did not stop")
		return nil
	}
}

// expect receives exactly want, in order.
func (f *follow) expect(want ...string) {
	f.t.Helper()
	for i, w := range want {
		select {
		case got := <-f.lines:
			if got != w {
				f.t.Fatalf("line %d: got %q, want %q", i, got, w)
			}
		case <-time.After(10 * time.Second):
			f.t.Fatalf("timed out waiting for line %d %q", i, w)
		}
	}
}

// quiet checks that nothing more arrives while the source polls a few
// more times.
func (f *follow) quiet() {
	f.t.Helper()
	n := f.src.Stats().Polls
	waitUntil(f.t, "more polls", func() bool { return f.src.Stats().Polls >= n+5 })
	select {
	case got := <-f.lines:
		f.t.Fatalf("unexpected line %q", got)
	default:
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func numbered(prefix string, from, to int) (lines []string, data string) {
	var b strings.Builder
	for i := from; i < to; i++ {
		l := fmt.Sprintf("%s line %04d", prefix, i)
		lines = append(lines, l)
		b.WriteString(l + "\n")
	}
	return lines, b.String()
}

func TestFileSourceStartsAtEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "old 1\nold 2\nold partial")
	f := startFollow(t, &FileSource{Path: path})
	waitUntil(t, "first poll", func() bool { return f.src.Stats().Polls > 0 })
	appendFile(t, path, " rest\nnew 1\nnew 2\n")
	f.expect("new 1", "new 2")
	f.quiet()
}

func TestFileSourceFromStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "old 1\r\nold 2\n")
	f := startFollow(t, &FileSource{Path: path, FromStart: true})
	f.expect("old 1", "old 2")
	appendFile(t, path, "new 1\n")
	f.expect("new 1")
}

func TestFileSourcePartialLineWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "")
	f := startFollow(t, &FileSource{Path: path})
	waitUntil(t, "first poll", func() bool { return f.src.Stats().Polls > 0 })
	appendFile(t, path, "first\nsecond hal")
	f.expect("first")
	f.quiet()
	appendFile(t, path, "f\n")
	f.expect("second half")
}

func TestFileSourceWaitsForMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	f := startFollow(t, &FileSource{Path: path})
	waitUntil(t, "polls", func() bool { return f.src.Stats().Polls > 2 })
	// A file that appears later is read from its start.
	appendFile(t, path, "a\nb\n")
	f.expect("a", "b")
}

func TestFileSourceLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "")
	f := startFollow(t, &FileSource{Path: path, MaxLineBytes: 16})
	waitUntil(t, "first poll", func() bool { return f.src.Stats().Polls > 0 })
	long := strings.Repeat("x", 40)
	appendFile(t, path, "exactly sixteen!\n"+long+"\nshort\n"+long[:10])
	appendFile(t, path, long[:10]+"\n")
	f.expect("exactly sixteen!", long[:16], "short", long[:16])
	if st := f.src.Stats(); st.Truncated != 2 {
		t.Fatalf("truncated %d, want 2", st.Truncated)
	}
}

func TestFileSourceRenameRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	appendFile(t, path, "")
	f := startFollow(t, &FileSource{Path: path})
	waitUntil(t, "first poll", func() bool { return f.src.Stats().Polls > 0 })

	// The writer keeps its descriptor across the rename, as a daemon does
	// until it is told to reopen.
	w, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write := func(fh *os.File, s string) {
		if _, err := fh.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	before, data := numbered("before", 0, 50)
	write(w, data)
	f.expect(before...)

	write(w, "half of a li")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Written to the renamed file before the new one exists.
	write(w, "ne\n")
	late, data := numbered("late", 0, 20)
	write(w, data)
	appendFile(t, path, "")
	waitUntil(t, "rotation", func() bool { return f.src.Stats().Rotations == 1 })
	// Written to the renamed file after the follower moved on, within
	// its grace period.
	later, data := numbered("later", 0, 5)
	write(w, data)
	w.Close()

	after, data := numbered("after", 0, 50)
	appendFile(t, path, data)

	// Old and new files are read concurrently: check each file's lines
	// arrive once and in order.
	want := append(append(append([]string{"half of a line"}, late...), later...), after...)
	var got []string
	for range want {
		select {
		case l := <-f.lines:
			got = append(got, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out; got %d of %d lines", len(got), len(want))
		}
	}
	f.quiet()
	var old, cur []string
	for _, l := range got {
		if strings.HasPrefix(l, "after") {
			cur = append(cur, l)
		} else {
			old = append(old, l)
		}
	}
	if !slices.Equal(old, want[:len(want)-len(after)]) || !slices.Equal(cur, after) {
		t.Fatalf("rotation lost, duplicated or reordered lines:\nold %q\nnew %q", old, cur)
	}
}

func TestFileSourceCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	appendFile(t, path, "")
	f := startFollow(t, &FileSource{Path: path})
	waitUntil(t, "first poll", func() bool { return f.src.Stats().Polls > 0 })
	before, data := numbered("before", 0, 100)
	appendFile(t, path, data)
	f.expect(before...)

	// logrotate copies the file away and truncates it; the writer goes on
	// appending (less than was there, so the shrink is visible).
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	after, data := numbered("after", 0, 10)
	appendFile(t, path, data)
	f.expect(after...)
	f.quiet()
	if st := f.src.Stats(); st.Truncations != 1 {
		t.Fatalf("truncations %d, want 1", st.Truncations)
	}
	more, data := numbered("more", 0, 10)
	appendFile(t, path, data)
	f.expect(more...)
}

func TestFileSourceErrors(t *testing.T) {
	if err := (&FileSource{}).Run(t.Context(), make(chan string)); err == nil {
		t.Fatal("empty path accepted")
	}
	dir := t.TempDir()
	// A directory opens but cannot be read.
	err := (&FileSource{Path: dir, FromStart: true, PollInterval: time.Millisecond}).Run(t.Context(), make(chan string))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("reading a directory: err = %v", err)
	}
}

func TestFileSourceStopsWhileBlockedOnOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	_, data := numbered("x", 0, 10)
	appendFile(t, path, data)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	src := &FileSource{Path: path, FromStart: true, PollInterval: time.Millisecond}
	go func() { done <- src.Run(ctx, make(chan string)) }() // nobody reads
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// lineSource emits fixed lines, then fails or ends.
type lineSource struct {
	lines []string
	err   error
}

func (s lineSource) Run(ctx context.Context, out chan<- string) error {
	for _, l := range s.lines {
		select {
		case out <- l:
		case <-ctx.Done():
			return nil
		}
	}
	return s.err
}

func TestRunDrainsAndReportsSourceError(t *testing.T) {
	var lines []string
	for i := range 5 {
		lines = append(lines, failAt(time.Duration(i)*time.Second, "203.0.113.7"))
	}
	boom := errors.New("boom")
	for _, srcErr := range []error{nil, boom} {
		e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
		var got []intel.Sighting
		err := Run(t.Context(), lineSource{lines: lines, err: srcErr}, e, func(s intel.Sighting) { got = append(got, s) })
		if !errors.Is(err, srcErr) || (srcErr == nil && err != nil) {
			t.Fatalf("source error %v: Run returned %v", srcErr, err)
		}
		if len(got) != 1 {
			t.Fatalf("source error %v: %d sightings, want 1 (queued lines must be drained)", srcErr, len(got))
		}
	}
}
