package consensus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/routine"
)

// TestForwarderBatches: proposals that arrive while maxForwardInFlight
// batches are on their way leave together, never more than
// maxForwardInFlight batches at once, and each proposer gets its own
// command's result.
func TestForwarderBatches(t *testing.T) {
	const n = 40
	g := routine.New(context.Background())
	defer g.Close()
	release := make(chan struct{})
	var mu sync.Mutex
	inFlight, maxInFlight, sends, sent := 0, 0, 0, 0
	blocked := make(chan struct{}, n)
	f := newForwarder(g, func(ctx context.Context, to peer.ID, hops int, cmds [][]byte) ([]error, error) {
		mu.Lock()
		inFlight++
		sends++
		sent += len(cmds)
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		blocked <- struct{}{}
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		if hops != 1 {
			return nil, fmt.Errorf("hops %d, want 1", hops)
		}
		res := make([]error, len(cmds))
		for i, c := range cmds {
			if v, _ := strconv.Atoi(string(c)); v%3 == 0 {
				res[i] = fmt.Errorf("refused %s", c)
			}
		}
		return res, nil
	})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f.forward(context.Background(), "leader", 1, []byte(strconv.Itoa(i))) })
		if i < maxForwardInFlight {
			<-blocked // the first proposals each find a free sender
		}
	}
	// Every proposal is queued or on its way before any batch returns.
	waitFor(t, 10*time.Second, "every proposal to be queued", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		q := f.queues[forwardKey{"leader", 1}]
		mu.Lock()
		defer mu.Unlock()
		return q != nil && len(q.pending)+sent == n
	})
	close(release)
	wg.Wait()
	for i, err := range errs {
		if want := i%3 == 0; (err != nil) != want || (want && err.Error() != fmt.Sprintf("refused %d", i)) {
			t.Errorf("proposal %d: %v, want refused: %v", i, err, want)
		}
	}
	if maxInFlight > maxForwardInFlight {
		t.Errorf("%d batches at once, limit %d", maxInFlight, maxForwardInFlight)
	}
	if sent != n || sends > maxForwardInFlight+maxForwardInFlight {
		t.Errorf("%d commands in %d batches; want %d in at most %d", sent, sends, n, 2*maxForwardInFlight)
	}
	if got := f.batches.Load(); got != uint64(sends) || f.commands.Load() != n {
		t.Errorf("counted %d batches, %d commands; want %d, %d", got, f.commands.Load(), sends, n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queues) != 0 {
		t.Errorf("%d queues left after every batch returned", len(f.queues))
	}
}

// TestForwarderBatchBounds: a batch holds at most maxForwardBytes of
// commands (one larger command goes alone), and a failed batch fails
// each of its proposals with the batch's error.
func TestForwarderBatchBounds(t *testing.T) {
	g := routine.New(context.Background())
	defer g.Close()
	boom := errors.New("stream reset")
	var mu sync.Mutex
	var batches [][]int // the sizes of each batch's commands
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	started := make(chan struct{}, 16)
	f := newForwarder(g, func(ctx context.Context, to peer.ID, hops int, cmds [][]byte) ([]error, error) {
		var sizes []int
		for _, c := range cmds {
			sizes = append(sizes, len(c))
		}
		mu.Lock()
		batches = append(batches, sizes)
		mu.Unlock()
		started <- struct{}{}
		<-release
		return nil, boom
	})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	// Every sender busy with a small command...
	for range maxForwardInFlight {
		wg.Go(func() { errs <- f.forward(context.Background(), "leader", 1, []byte("x")) })
		<-started
	}
	// ... while six commands of a third of the bound each wait.
	big := make([]byte, maxForwardBytes/3+1)
	for range 6 {
		wg.Go(func() { errs <- f.forward(context.Background(), "leader", 1, big) })
	}
	waitFor(t, 10*time.Second, "the large proposals to be queued", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		q := f.queues[forwardKey{"leader", 1}]
		return q != nil && len(q.pending) == 6
	})
	open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("proposal in a failed batch: %v, want the batch's error", err)
		}
	}
	most, commands := 0, 0
	for _, b := range batches {
		total := 0
		for _, n := range b {
			total += n
		}
		if total > maxForwardBytes {
			t.Errorf("a batch of %d bytes (%d commands), limit %d", total, len(b), maxForwardBytes)
		}
		most = max(most, len(b))
		commands += len(b)
	}
	if commands != maxForwardInFlight+6 || most != 2 {
		t.Errorf("%d commands in batches of at most %d; want %d, and 2 large ones together", commands, most, maxForwardInFlight+6)
	}
}

// TestFollowerProposalsShareBatches: concurrent proposals from a follower
// reach the leader in fewer batch requests than proposals, each
// committed, and refusals come back to their own proposer.
func TestFollowerProposalsShareBatches(t *testing.T) {
	nodes := newCluster(t, 3)
	f := followerOf(nodes)
	const n = 48
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ind := mustIndicator(t, fmt.Sprintf("198.51.100.%d", i))
			op := intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: 3600, Reason: "test"}
			mesh := f.c.MeshID()
			if i%4 == 0 {
				mesh = fmt.Sprintf("mesh-%d", i) // refused by the leader's check
			}
			errs[i] = f.c.ProposeOperator(ctx, signOp(t, testOperatorKey, mesh, time.Now().UTC(), op))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if i%4 == 0 {
			if RefusalReason(err) != "wrong_mesh" || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), fmt.Sprintf("%q", fmt.Sprintf("mesh-%d", i))) {
				t.Errorf("proposal %d for mesh-%d: %v, want its own wrong_mesh refusal", i, i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("proposal %d: %v", i, err)
		}
	}
	leader := leaderOf(nodes)
	for i := range n {
		ind := mustIndicator(t, fmt.Sprintf("198.51.100.%d", i))
		if got, want := hasPolicy(leader.c, intel.PolicyID(intel.ActionBlock, ind)), i%4 != 0; got != want {
			t.Errorf("leader holds the block of proposal %d: %v, want %v", i, got, want)
		}
	}
	st := f.c.Stats()
	batches, _ := strconv.Atoi(st["forwarded_batches"])
	commands, _ := strconv.Atoi(st["forwarded_commands"])
	if commands < n || batches >= commands {
		t.Errorf("%d commands forwarded in %d batches; want at least %d commands, in fewer batches", commands, batches, n)
	}
}

// TestForwarderClose: closing the group ends the waits of the proposals
// on their way, and a proposal after Close fails with ErrClosed at once,
// leaving nothing queued.
func TestForwarderClose(t *testing.T) {
	g := routine.New(context.Background())
	started := make(chan struct{}, 1)
	f := newForwarder(g, func(ctx context.Context, to peer.ID, hops int, cmds [][]byte) ([]error, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() { done <- f.forward(context.Background(), "leader", 1, []byte("x")) }()
	<-started
	g.Close()
	if err := <-done; err == nil {
		t.Fatal("a proposal on its way when the forwarder closed succeeded")
	}
	if err := f.forward(context.Background(), "leader", 1, []byte("y")); !errors.Is(err, ErrClosed) {
		t.Fatalf("a proposal after Close: %v, want ErrClosed", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queues) != 0 {
		t.Fatalf("%d queues left after Close", len(f.queues))
	}
}
