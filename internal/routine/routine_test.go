package routine

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestCloseCancelsAndWaits(t *testing.T) {
	g := New(context.Background())
	var done atomic.Int32
	for range 3 {
		g.Go(func(ctx context.Context) {
			<-ctx.Done()
			done.Add(1)
		})
	}
	g.Close()
	if done.Load() != 3 {
		t.Fatalf("Close returned with %d of 3 goroutines finished", done.Load())
	}
	if g.Go(func(context.Context) { t.Error("ran after Close") }) {
		t.Error("Go after Close reported true")
	}
	g.Close() // idempotent
}

func TestParentCancelReachesGoroutines(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	g := New(parent)
	stopped := make(chan struct{})
	g.Go(func(ctx context.Context) { <-ctx.Done(); close(stopped) })
	cancel()
	<-stopped
	g.Close()
}
