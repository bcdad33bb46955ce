package routine

import (
	"context"
	"sync"
)

// Loop is the one background goroutine of a component whose Start(ctx)
// runs it and whose Close stops it: started at most once, never after
// Close, and Close waits for it. The zero value is ready to use.
type Loop struct {
	mu      sync.Mutex
	started bool
	closed  bool
	group   *Group
}

// Start runs f in a new Group derived from ctx. Calling it again, or
// after Close, does nothing.
func (l *Loop) Start(ctx context.Context, f func(ctx context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed {
		return
	}
	l.started = true
	l.group = New(ctx)
	l.group.Go(f)
}

// Close cancels the loop's context and waits for it to return; before
// Start it only keeps Start from running. Idempotent.
func (l *Loop) Close() {
	l.mu.Lock()
	l.closed = true
	g := l.group
	l.mu.Unlock()
	if g != nil {
		g.Close()
	}
}
