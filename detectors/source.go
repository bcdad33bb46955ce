package detectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"
)

// Source yields log lines, without their newline, on out. Run returns nil
// when ctx ends (or the source is exhausted) and an error when it cannot
// go on. A source never closes out.
type Source interface {
	Run(ctx context.Context, out chan<- string) error
}

// Defaults of FileSource.
const (
	DefaultPollInterval = 250 * time.Millisecond
	DefaultMaxLineBytes = 8 << 10
)

// FileSource follows a file the way tail -F does: it reads
// what is appended, follows the path when the file is renamed away and a
// new one created (logrotate's default), and starts over when the file is
// truncated in place (copytruncate). A line is emitted only once its
// newline has arrived; a last line cut off by rotation or truncation is
// emitted when the follower gives its file up.
//
// After a rename the old file is still read for a grace period (ten poll
// intervals from its last growth), so that lines a writer appends before
// it reopens its log are not lost.
//
// inotify wakes the follower as soon as the file is written, created,
// renamed or removed, so a line reaches the rules within milliseconds;
// polling at PollInterval stays as the fallback for what inotify does not
// report and for systems (or watch limits) where no watch can be set.
//
// Set the fields before Run; do not copy a FileSource after first use.
type FileSource struct {
	Path string
	// FromStart reads the file from its beginning (a replay); otherwise
	// the follower starts at its end. A file that appears at Path later
	// (after rotation, or created after Run started) is always read from
	// its beginning.
	FromStart bool
	// PollInterval is how often the file is checked (default 250ms).
	PollInterval time.Duration
	// MaxLineBytes bounds a line (default 8 KiB); a longer one is cut to
	// this length, emitted, and counted in FileSourceStats.Truncated.
	MaxLineBytes int
	// NoNotify turns inotify off: the file is only polled.
	NoNotify bool

	lines, truncated, rotations, truncations, polls, wakeups atomic.Uint64
	notifying                                                atomic.Bool
}

var _ Source = (*FileSource)(nil)

// FileSourceStats counts what a FileSource did.
type FileSourceStats struct {
	Lines       uint64 // lines emitted
	Truncated   uint64 // lines cut to MaxLineBytes
	Rotations   uint64 // new files followed at Path
	Truncations uint64 // times the file shrank and was read again from its start
	Polls       uint64 // checks of the file completed
	Wakeups     uint64 // checks started by an inotify event rather than the poll timer
	// Notifying is whether inotify watches the file's directory; false
	// means the source only polls.
	Notifying bool
}

// Stats returns the source's counters.
func (f *FileSource) Stats() FileSourceStats {
	return FileSourceStats{
		Lines:       f.lines.Load(),
		Truncated:   f.truncated.Load(),
		Rotations:   f.rotations.Load(),
		Truncations: f.truncations.Load(),
		Polls:       f.polls.Load(),
		Wakeups:     f.wakeups.Load(),
		Notifying:   f.notifying.Load(),
	}
}

// tailFile is one open file being followed.
type tailFile struct {
	f       *os.File
	info    os.FileInfo
	off     int64
	partial []byte
	discard bool      // dropping bytes up to the next newline
	idle    time.Time // for a rotated file: when to give it up
}

// Run follows the file until ctx ends. A missing file is waited for; a
// file that cannot be opened or read for another reason is an error.
func (f *FileSource) Run(ctx context.Context, out chan<- string) error {
	if f.Path == "" {
		return errors.New("file source: path is empty")
	}
	poll := f.PollInterval
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	maxLine := f.MaxLineBytes
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	r := &follower{src: f, ctx: ctx, out: out, maxLine: maxLine, grace: 10 * poll, buf: make([]byte, 64<<10)}
	defer r.closeAll()

	var wake <-chan struct{}
	if !f.NoNotify {
		// Subscribe before the first look at the file, so that nothing
		// written after it goes unannounced. Without a watch the source
		// polls: slower, never wrong.
		if w, cancel, err := subscribeFile(f.Path); err == nil {
			wake = w
			f.notifying.Store(true)
			defer func() {
				cancel()
				f.notifying.Store(false)
			}()
		}
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	atEnd := !f.FromStart
	for {
		if r.cur == nil {
			tf, err := openTail(f.Path, atEnd)
			switch {
			case err == nil:
				r.cur = tf
			case !errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("file source: %w", err)
			}
			atEnd = false // a file that appears later is read whole
		}
		if err := r.step(); err != nil {
			return fmt.Errorf("file source %s: %w", f.Path, err)
		}
		f.polls.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-wake:
			f.wakeups.Add(1)
		}
	}
}

// follower is the state of one Run.
type follower struct {
	src     *FileSource
	ctx     context.Context
	out     chan<- string
	maxLine int
	grace   time.Duration
	buf     []byte
	cur     *tailFile
	old     []*tailFile // renamed away, still draining
}

// step reads every file to its end and checks the path for rotation and
// truncation.
func (r *follower) step() error {
	now := time.Now()
	kept := r.old[:0]
	for _, o := range r.old {
		n, err := r.drain(o)
		if err != nil {
			return err
		}
		if n > 0 {
			o.idle = now.Add(r.grace)
		}
		if now.Before(o.idle) {
			kept = append(kept, o)
			continue
		}
		r.flush(o)
		o.f.Close()
	}
	r.old = kept
	if r.cur == nil {
		return nil
	}
	if _, err := r.drain(r.cur); err != nil {
		return err
	}
	fi, err := os.Stat(r.src.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // renamed away; the new file is not there yet
	case err != nil:
		return nil // transient; the next poll looks again
	case !os.SameFile(fi, r.cur.info):
		nf, err := openTail(r.src.Path, false)
		if err != nil {
			return nil // raced with another rename; the next poll looks again
		}
		r.cur.idle = now.Add(r.grace)
		r.old = append(r.old, r.cur)
		r.cur = nf
		r.src.rotations.Add(1)
		_, err = r.drain(r.cur)
		return err
	case fi.Size() < r.cur.off:
		r.flush(r.cur)
		if _, err := r.cur.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("seek after truncation: %w", err)
		}
		r.cur.off = 0
		r.src.truncations.Add(1)
		_, err := r.drain(r.cur)
		return err
	}
	return nil
}

func openTail(path string, atEnd bool) (*tailFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	t := &tailFile{f: fh, info: info}
	if atEnd && info.Size() > 0 {
		// Start after the last complete line; if the file ends in the
		// middle of a line, skip that line's rest rather than emit a tail.
		last := make([]byte, 1)
		if _, err := fh.ReadAt(last, info.Size()-1); err == nil && last[0] != '\n' {
			t.discard = true
		}
		if t.off, err = fh.Seek(info.Size(), io.SeekStart); err != nil {
			fh.Close()
			return nil, fmt.Errorf("seek %s: %w", path, err)
		}
	}
	return t, nil
}

// drain reads t to its current end and emits its complete lines.
func (r *follower) drain(t *tailFile) (int, error) {
	total := 0
	for {
		n, err := t.f.Read(r.buf)
		if n > 0 {
			total += n
			t.off += int64(n)
			r.consume(t, r.buf[:n])
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read: %w", err)
		}
		if r.ctx.Err() != nil {
			return total, nil
		}
	}
}

// consume splits chunk into lines, keeping an unfinished one in t.partial.
func (r *follower) consume(t *tailFile, chunk []byte) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		complete := i >= 0
		seg := chunk
		if complete {
			seg, chunk = chunk[:i], chunk[i+1:]
		} else {
			chunk = nil
		}
		if t.discard {
			t.discard = !complete
			continue
		}
		if len(t.partial)+len(seg) > r.maxLine {
			t.partial = append(t.partial, seg[:r.maxLine-len(t.partial)]...)
			r.src.truncated.Add(1)
			r.emit(t.partial)
			t.partial = t.partial[:0]
			t.discard = !complete
			continue
		}
		if !complete {
			t.partial = append(t.partial, seg...)
			continue
		}
		if len(t.partial) > 0 {
			t.partial = append(t.partial, seg...)
			seg = t.partial
		}
		r.emit(seg)
		t.partial = t.partial[:0]
	}
}

// flush emits t's unfinished last line: its file is being given up.
func (r *follower) flush(t *tailFile) {
	if len(t.partial) > 0 && !t.discard {
		r.emit(t.partial)
	}
	t.partial, t.discard = t.partial[:0], false
}

func (r *follower) emit(b []byte) {
	b = bytes.TrimSuffix(b, []byte{'\r'})
	select {
	case r.out <- string(b):
		r.src.lines.Add(1)
	case <-r.ctx.Done():
	}
}

func (r *follower) closeAll() {
	for _, o := range r.old {
		o.f.Close()
	}
	if r.cur != nil {
		r.cur.f.Close()
	}
}
