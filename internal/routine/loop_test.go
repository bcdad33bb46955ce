package routine

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestLoopStartsOnceAndCloseWaits(t *testing.T) {
	var l Loop
	var runs atomic.Int32
	done := make(chan struct{})
	f := func(ctx context.Context) {
		runs.Add(1)
		<-ctx.Done()
		close(done)
	}
	l.Start(context.Background(), f)
	l.Start(context.Background(), f)
	l.Close()
	select {
	case <-done:
	default:
		t.Fatal("Close returned before the loop did")
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("loop ran %d times, want 1", n)
	}
	l.Close() // idempotent
}

func TestLoopNeverStartsAfterClose(t *testing.T) {
	var l Loop
	l.Close()
	ran := false
	l.Start(context.Background(), func(context.Context) { ran = true })
	l.Close()
	if ran {
		t.Fatal("a closed loop started")
	}
}
