package detectors

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fsnotify/fsnotify"
)

// The file sources of a process share one inotify instance (the kernel
// allows few: fs.inotify.max_user_instances is 128 by default), watching
// each directory that holds a followed file once, however many sources
// follow files in it. An event naming a followed file wakes its sources
// at once; polling stays as the fallback for what inotify does not say
// (a renamed-away file still being written, a watch that could not be
// set), so a missed event costs at most one poll interval.

// notifier is the process's shared watcher. It exists while at least one
// subscription does; the last cancel closes it and waits for its
// goroutine.
type notifier struct {
	w    *fsnotify.Watcher
	done chan struct{}
	// subs are the subscriptions by directory, then by file name.
	subs map[string]map[string][]*notifySub
}

// notifySub is one source's interest in one file: wake receives a token
// (never blocking: one pending wake is enough) when the file changes.
type notifySub struct {
	wake chan struct{}
}

var (
	notifyMu sync.Mutex
	shared   *notifier
	// notifyFailures counts subscriptions that could not set a watch
	// (the source polls instead).
	notifyFailures atomic.Uint64
	// newWatcher is fsnotify.NewWatcher; tests replace it to make the
	// watcher fail.
	newWatcher = fsnotify.NewWatcher
)

// subscribeFile wakes the returned channel whenever path's directory
// reports an event naming path's file (written, created, renamed,
// removed, attributes changed). cancel ends the subscription; it may be
// called more than once. An error means no watch could be set (no
// inotify, the limit of watches reached): the caller polls.
func subscribeFile(path string) (wake <-chan struct{}, cancel func(), err error) {
	defer func() {
		if err != nil {
			notifyFailures.Add(1)
		}
	}()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("watch %s: %w", path, err)
	}
	dir, name := filepath.Dir(abs), filepath.Base(abs)
	notifyMu.Lock()
	defer notifyMu.Unlock()
	if shared == nil {
		w, err := newWatcher()
		if err != nil {
			return nil, nil, fmt.Errorf("watch %s: %w", path, err)
		}
		shared = &notifier{w: w, done: make(chan struct{}), subs: make(map[string]map[string][]*notifySub)}
		go shared.run()
	}
	n := shared
	byName := n.subs[dir]
	if byName == nil {
		if err := n.w.Add(dir); err != nil {
			n.closeIfIdleLocked()
			return nil, nil, fmt.Errorf("watch %s: %w", dir, err)
		}
		byName = make(map[string][]*notifySub)
		n.subs[dir] = byName
	}
	s := &notifySub{wake: make(chan struct{}, 1)}
	byName[name] = append(byName[name], s)
	var once sync.Once
	return s.wake, func() { once.Do(func() { n.unsubscribe(dir, name, s) }) }, nil
}

func (n *notifier) unsubscribe(dir, name string, s *notifySub) {
	notifyMu.Lock()
	byName := n.subs[dir]
	list := byName[name]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(byName, name)
	} else {
		byName[name] = list
	}
	if len(byName) == 0 {
		delete(n.subs, dir)
		_ = n.w.Remove(dir) // the directory may be gone already
	}
	closed := n.closeIfIdleLocked()
	notifyMu.Unlock()
	if closed {
		<-n.done
	}
}

// closeIfIdleLocked closes the watcher when nothing is subscribed; the
// caller holds notifyMu and, when it returns true, waits on n.done after
// unlocking.
func (n *notifier) closeIfIdleLocked() bool {
	if len(n.subs) > 0 || shared != n {
		return false
	}
	shared = nil
	n.w.Close()
	return true
}

// run dispatches the watcher's events until it is closed.
func (n *notifier) run() {
	defer close(n.done)
	events, errs := n.w.Events, n.w.Errors
	for events != nil || errs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			n.dispatch(ev.Name)
		case _, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow or a read error: events were lost. Wake every
			// source so each looks at its files now rather than at its
			// next poll.
			n.wakeAll()
		}
	}
}

func (n *notifier) dispatch(name string) {
	dir, base := filepath.Dir(name), filepath.Base(name)
	notifyMu.Lock()
	defer notifyMu.Unlock()
	for _, s := range n.subs[dir][base] {
		s.signal()
	}
}

func (n *notifier) wakeAll() {
	notifyMu.Lock()
	defer notifyMu.Unlock()
	for _, byName := range n.subs {
		for _, list := range byName {
			for _, s := range list {
				s.signal()
			}
		}
	}
}

func (s *notifySub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// NotifyStats says how the process's file sources are woken: the files
// inotify watches now, and the subscriptions that could set no watch
// since the start (those sources poll).
func NotifyStats() (watched int, failures uint64) {
	notifyMu.Lock()
	defer notifyMu.Unlock()
	if shared != nil {
		for _, byName := range shared.subs {
			for _, list := range byName {
				watched += len(list)
			}
		}
	}
	return watched, notifyFailures.Load()
}
