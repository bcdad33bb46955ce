package consensus

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func serves(h host.Host, p protocol.ID) bool { return slices.Contains(h.Mux().Protocols(), p) }

// TestNewWithEndedContext: a start whose context has ended returns its
// error and leaves nothing behind on the host.
func TestNewWithEndedContext(t *testing.T) {
	h := newTestHost(t, newKey(t), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	store := raft.NewInmemStore()
	c, err := New(ctx, h, store, store, raft.NewInmemSnapshotStore(), Config{LocalID: h.ID().String(), Bootstrap: true,
		BootstrapOperators: []string{bootstrapOperatorText(testOperatorKey)}})
	if err == nil {
		c.Close()
		t.Fatal("New started with an ended context")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v is not the context's", err)
	}
	if serves(h, RaftProtocol) || serves(h, RPCProtocol) {
		t.Fatal("a failed start left its stream handlers on the host")
	}
}

// TestCloseWaitsForGoroutines: Close ends the loops and the RPC handlers
// and waits until raft's transport has let go of every connection the
// stream layer handed it (its connection handlers have returned), even
// while the leader keeps sending to the closed node. A second Close is a
// no-op.
func TestCloseWaitsForGoroutines(t *testing.T) {
	nodes := newCluster(t, 2)
	f := followerOf(nodes)
	waitFor(t, 10*time.Second, "the leader to open a raft connection to the follower", func() bool {
		return inbound(f.c.layer) > 0
	})
	if err := f.c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := inbound(f.c.layer); n != 0 {
		t.Fatalf("Close returned with %d inbound raft connections still held by the transport", n)
	}
	if f.c.group.Context().Err() == nil {
		t.Fatal("Close left the loops' context alive")
	}
	if serves(f.h, RaftProtocol) || serves(f.h, RPCProtocol) {
		t.Fatal("Close left stream handlers on the host")
	}
	if f.c.group.Go(func(context.Context) {}) {
		t.Fatal("the group accepts goroutines after Close")
	}
	if err := f.c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// inbound counts the accepted connections raft has not closed.
func inbound(l *streamLayer) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := range l.conns {
		if c.inbound {
			n++
		}
	}
	return n
}
