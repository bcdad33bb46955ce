package consensus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Bounds of forwarding proposals to the leader in batches.
const (
	// maxForwardInFlight is how many batches one node has on their way to
	// one leader at once. Below it a proposal leaves at once; beyond it
	// proposals wait and leave together in the next batch, so that many
	// concurrent proposals cost a few RPCs and reach raft together.
	maxForwardInFlight = 4
	// maxForwardBatch and maxForwardBytes bound one batch: its commands,
	// and their bytes, so that its request stays within maxRPCSize once
	// encoded (base64 adds a third). A command alone may exceed
	// maxForwardBytes up to maxCommandSize.
	maxForwardBatch = 256
	maxForwardBytes = 512 << 10
)

// forwardItem is one proposal waiting to be forwarded.
type forwardItem struct {
	data []byte
	done chan error // buffered: the sender never blocks on a caller gone
}

// forwardKey names a queue: the leader and the hop count its requests
// carry.
type forwardKey struct {
	to   peer.ID
	hops int
}

type forwardQueue struct {
	pending []*forwardItem
	senders int
}

// forwardSend sends one batch of encoded commands to a leader and returns
// one result per command, or an error for the whole batch.
type forwardSend func(ctx context.Context, to peer.ID, hops int, cmds [][]byte) ([]error, error)

// forwarder forwards proposals to the leader in batches: the proposals
// that arrive while maxForwardInFlight batches are on their way leave
// together, each with its own result. The batches are sent from
// goroutines of group, so that a proposer that stops waiting (its
// context ended) does not end the batch of the others.
type forwarder struct {
	group forwardGroup
	send  forwardSend

	mu     sync.Mutex
	queues map[forwardKey]*forwardQueue

	batches  atomic.Uint64 // batch RPCs sent
	commands atomic.Uint64 // commands sent in them
}

// forwardGroup runs the forwarder's senders (a *routine.Group).
type forwardGroup interface {
	Go(func(context.Context)) bool
	Context() context.Context
}

func newForwarder(group forwardGroup, send forwardSend) *forwarder {
	return &forwarder{group: group, send: send, queues: map[forwardKey]*forwardQueue{}}
}

// forward sends data to the leader to, in a batch, and waits for its
// result or the end of ctx. As with raft.Apply, a proposal whose wait
// ended may still be committed.
func (f *forwarder) forward(ctx context.Context, to peer.ID, hops int, data []byte) error {
	it := &forwardItem{data: data, done: make(chan error, 1)}
	k := forwardKey{to, hops}
	f.mu.Lock()
	q := f.queues[k]
	if q == nil {
		q = &forwardQueue{}
		f.queues[k] = q
	}
	q.pending = append(q.pending, it)
	start := q.senders < maxForwardInFlight
	if start {
		q.senders++
	}
	f.mu.Unlock()
	if start && !f.group.Go(func(gctx context.Context) { f.drain(gctx, k, q) }) {
		f.mu.Lock()
		q.senders--
		f.forget(k, q, it)
		f.mu.Unlock()
		return ErrClosed
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-f.group.Context().Done():
		// Closed: the batch this proposal waits for may never leave.
		f.mu.Lock()
		f.forget(k, q, it)
		f.mu.Unlock()
		return ErrClosed
	}
}

// forget removes it from q if it is still pending, and q if it is idle.
// Caller holds mu.
func (f *forwarder) forget(k forwardKey, q *forwardQueue, it *forwardItem) {
	for i, p := range q.pending {
		if p == it {
			q.pending = append(q.pending[:i:i], q.pending[i+1:]...)
			break
		}
	}
	if len(q.pending) == 0 && q.senders == 0 && f.queues[k] == q {
		delete(f.queues, k)
	}
}

// take removes the next batch from q; with none pending it retires the
// sender (and forgets an idle queue). Caller holds mu.
func (f *forwarder) take(k forwardKey, q *forwardQueue) []*forwardItem {
	if len(q.pending) == 0 {
		q.senders--
		if q.senders == 0 {
			delete(f.queues, k)
		}
		return nil
	}
	n, size := 0, 0
	for n < len(q.pending) && n < maxForwardBatch {
		size += len(q.pending[n].data)
		if n > 0 && size > maxForwardBytes {
			break
		}
		n++
	}
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	if len(q.pending) == 0 {
		q.pending = nil
	}
	return batch
}

// drain sends q's pending proposals, batch after batch, until none is
// left.
func (f *forwarder) drain(ctx context.Context, k forwardKey, q *forwardQueue) {
	for {
		f.mu.Lock()
		batch := f.take(k, q)
		f.mu.Unlock()
		if batch == nil {
			return
		}
		cmds := make([][]byte, len(batch))
		for i, it := range batch {
			cmds[i] = it.data
		}
		f.batches.Add(1)
		f.commands.Add(uint64(len(cmds)))
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		results, err := f.send(actx, k.to, k.hops, cmds)
		cancel()
		if err == nil && len(results) != len(batch) {
			err = fmt.Errorf("forward %d commands to %s: %d results", len(batch), shortID(k.to.String()), len(results))
		}
		for i, it := range batch {
			if err != nil {
				it.done <- err
			} else {
				it.done <- results[i]
			}
		}
	}
}

// sendProposals is the forwarder's send: one propose_batch request to the
// leader. A leader that does not know the request (an older version)
// answers ErrInvalidCommand without results; the commands are then sent
// one request each.
func (c *Consensus) sendProposals(ctx context.Context, to peer.ID, hops int, cmds [][]byte) ([]error, error) {
	resp, err := c.callResp(ctx, to, &rpcRequest{Kind: rpcProposeBatch, Hops: hops, Commands: cmds})
	if err != nil && errors.Is(err, ErrInvalidCommand) && strings.Contains(err.Error(), unknownRPC) {
		results := make([]error, len(cmds))
		for i, data := range cmds {
			results[i] = c.call(ctx, to, &rpcRequest{Kind: rpcPropose, Hops: hops, Command: data})
		}
		return results, nil
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Results) != len(cmds) {
		return nil, fmt.Errorf("forward %d commands to %s: %d results", len(cmds), shortID(to.String()), len(resp.Results))
	}
	results := make([]error, len(cmds))
	for i, r := range resp.Results {
		results[i] = r.err(to)
	}
	return results, nil
}

// proposeBatch serves a propose_batch request: each command is checked
// and proposed as a forwarded proposal alone would be, all at once, so
// that they share the leader's log batches; the response holds each
// one's result, in order.
func (c *Consensus) proposeBatch(ctx context.Context, req *rpcRequest) (rpcResponse, error) {
	if len(req.Commands) == 0 || len(req.Commands) > maxForwardBatch {
		return rpcResponse{}, fmt.Errorf("%w: a batch of %d commands, want 1..%d", ErrInvalidCommand, len(req.Commands), maxForwardBatch)
	}
	results := make([]rpcResponse, len(req.Commands))
	var wg sync.WaitGroup
	for i, data := range req.Commands {
		wg.Go(func() {
			cmd, err := c.staticCheck(data)
			if err == nil {
				err = c.proposeOnce(ctx, data, &cmd, req.Hops)
			}
			results[i] = responseFor(err)
		})
	}
	wg.Wait()
	return rpcResponse{Results: results}, nil
}
