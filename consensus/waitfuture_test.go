package consensus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// neverFuture is a raft future that is never resolved, as one raft
// dropped at its shutdown.
type neverFuture struct{ block chan struct{} }

func (f neverFuture) Error() error { <-f.block; return nil }

// TestWaitFutureLeavesOnContext: a loop waiting for a raft future that
// is never resolved leaves when its context ends (Close cancels it),
// and a future raft answers with its shutdown reads as ErrClosed.
func TestWaitFutureLeavesOnContext(t *testing.T) {
	never := neverFuture{block: make(chan struct{})}
	defer close(never.block)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- waitFuture(ctx, never) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitFuture did not return after its context ended")
	}
	var shut raft.Future = errFuture{raft.ErrRaftShutdown}
	if err := waitFuture(context.Background(), shut); !errors.Is(err, ErrClosed) {
		t.Fatalf("raft shut down: err = %v, want ErrClosed", err)
	}
}

type errFuture struct{ err error }

func (f errFuture) Error() error { return f.err }
