// Package routine owns long-running goroutines: one Group per component,
// started from the component's Start(ctx), stopped by its Close. A Group's
// goroutines see a context that ends when the parent ends or when Close is
// called, and Close waits for every one of them, so a component that uses a
// Group never leaks a goroutine past Close and never starts one on
// context.Background.
package routine

import (
	"context"
	"sync"
)

// Group is a set of goroutines sharing one cancellable context. The zero
// value is not usable; call New.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns a Group whose context is derived from parent.
func New(parent context.Context) *Group {
	ctx, cancel := context.WithCancel(parent)
	return &Group{ctx: ctx, cancel: cancel}
}

// Context is the Group's context: done when the parent is done or Close
// was called.
func (g *Group) Context() context.Context { return g.ctx }

// Go runs f in a new goroutine with the Group's context. After Close it
// does nothing and reports false.
func (g *Group) Go(f func(ctx context.Context)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
	return true
}

// Close cancels the Group's context and waits for every goroutine started
// by Go to return. It is idempotent and safe to call concurrently.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
