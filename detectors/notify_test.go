package detectors

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// noPoll is a poll interval no test lives to see: with it, only an
// inotify event can make a source look at its file again.
const noPoll = time.Hour

// TestFileSourceWokenByInotify follows a file that is never polled after
// the first look: appended lines, a rotation by rename and create, and a
// copytruncate must all arrive, woken by inotify alone.
func TestFileSourceWokenByInotify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.log")
	appendFile(t, path, "old\n")
	// Another file in the same directory shares the watch but must not
	// wake this source.
	other := filepath.Join(dir, "other.log")
	f := startFollow(t, &FileSource{Path: path, PollInterval: noPoll})
	waitUntil(t, "first look and watch", func() bool {
		st := f.src.Stats()
		return st.Polls > 0 && st.Notifying
	})

	appendFile(t, path, "new 1\nnew 2\n")
	f.expect("new 1", "new 2")

	wakeups := f.src.Stats().Wakeups
	appendFile(t, other, "elsewhere\n")
	appendFile(t, path, "after other\n")
	f.expect("after other")
	if f.src.Stats().Wakeups == wakeups {
		t.Fatal("a line arrived without a wakeup")
	}

	// logrotate's default: rename away, create anew.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "rotated 1\n")
	f.expect("rotated 1")
	waitUntil(t, "rotation counted", func() bool { return f.src.Stats().Rotations == 1 })

	// copytruncate: truncate in place, then write.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "t\n")
	f.expect("t")
	// A look is counted once its step is done, after its lines went out:
	// wait for the counters to settle rather than read them mid-look. A
	// look started by the poll timer would leave Polls ahead for good.
	waitUntil(t, "every look but the first woken by inotify", func() bool {
		st := f.src.Stats()
		return st.Polls == st.Wakeups+1
	})
	if err := f.close(); err != nil {
		t.Fatal(err)
	}
	if f.src.Stats().Notifying {
		t.Error("still notifying after Run returned")
	}
}

// TestFileSourceWaitsForFileByInotify: a file created after the source
// started is read whole as soon as it appears, not at the next poll.
func TestFileSourceWaitsForFileByInotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "late.log")
	f := startFollow(t, &FileSource{Path: path, PollInterval: noPoll})
	waitUntil(t, "first look and watch", func() bool {
		st := f.src.Stats()
		return st.Polls > 0 && st.Notifying
	})
	appendFile(t, path, "first\nsecond\n")
	f.expect("first", "second")
}

// TestFileSourcePollsWithoutInotify: when no watch can be set the source
// says so, the failure is counted, and polling still delivers every line.
func TestFileSourcePollsWithoutInotify(t *testing.T) {
	newWatcher = func() (*fsnotify.Watcher, error) { return nil, errors.New("too many open files") }
	t.Cleanup(func() { newWatcher = fsnotify.NewWatcher })
	_, failures := NotifyStats()

	path := filepath.Join(t.TempDir(), "auth.log")
	f := startFollow(t, &FileSource{Path: path})
	waitUntil(t, "first poll", func() bool { return f.src.Stats().Polls > 0 })
	if f.src.Stats().Notifying {
		t.Fatal("notifying with a watcher that cannot be made")
	}
	if _, n := NotifyStats(); n != failures+1 {
		t.Fatalf("watch failures %d, want %d", n, failures+1)
	}
	appendFile(t, path, "polled\n")
	f.expect("polled")
	if w := f.src.Stats().Wakeups; w != 0 {
		t.Fatalf("%d wakeups without a watcher", w)
	}
}

// TestNotifierSharedAndReleased: sources in one directory share the
// process's watcher; when the last stops, the watcher is closed and its
// goroutine gone.
func TestNotifierSharedAndReleased(t *testing.T) {
	dir := t.TempDir()
	a := startFollow(t, &FileSource{Path: filepath.Join(dir, "a.log"), PollInterval: noPoll})
	b := startFollow(t, &FileSource{Path: filepath.Join(dir, "b.log"), PollInterval: noPoll})
	c := startFollow(t, &FileSource{Path: filepath.Join(dir, "a.log"), PollInterval: noPoll})
	for _, f := range []*follow{a, b, c} {
		waitUntil(t, "watch", func() bool { return f.src.Stats().Notifying && f.src.Stats().Polls > 0 })
	}
	if w, _ := NotifyStats(); w != 3 {
		t.Fatalf("watched %d, want 3", w)
	}
	notifyMu.Lock()
	n := shared
	dirs := len(shared.subs)
	notifyMu.Unlock()
	if dirs != 1 {
		t.Fatalf("%d directories watched, want 1", dirs)
	}
	appendFile(t, filepath.Join(dir, "a.log"), "to a\n")
	a.expect("to a")
	c.expect("to a")

	for _, f := range []*follow{a, b, c} {
		if err := f.close(); err != nil {
			t.Fatal(err)
		}
	}
	if w, _ := NotifyStats(); w != 0 {
		t.Fatalf("watched %d after every source stopped", w)
	}
	select {
	case <-n.done:
	default:
		t.Fatal("the watcher's goroutine still runs after the last source stopped")
	}
	notifyMu.Lock()
	defer notifyMu.Unlock()
	if shared != nil {
		t.Fatal("the shared watcher was not released")
	}
}

// TestNotifierDispatchesByName: an event wakes exactly the subscriptions
// of the file it names, not the others watched in its directory.
func TestNotifierDispatchesByName(t *testing.T) {
	dir := t.TempDir()
	wa, cancelA, err := subscribeFile(filepath.Join(dir, "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer cancelA()
	wb, cancelB, err := subscribeFile(filepath.Join(dir, "b.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer cancelB()
	notifyMu.Lock()
	n := shared
	notifyMu.Unlock()
	abs, err := filepath.Abs(filepath.Join(dir, "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	n.dispatch(abs)
	n.dispatch(abs) // a second event while one wake is pending: coalesced
	if len(wa) != 1 || len(wb) != 0 {
		t.Fatalf("pending wakes: a %d, b %d; want 1 and 0", len(wa), len(wb))
	}
	n.wakeAll()
	if len(wb) != 1 {
		t.Fatal("an overflow did not wake every subscription")
	}
}
