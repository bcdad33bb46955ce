package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// readPoll is how often a follower checks whether it has applied up to a
// read index.
const readPoll = 2 * time.Millisecond

// ReadPolicies returns the policies active at now with linearizable
// consistency: the result reflects every command committed before the call
// (on any node), and possibly later ones. It needs a leader: on a node cut
// off from the quorum it fails when ctx ends, whereas Policies keeps
// answering from the last committed state.
//
// It uses the read-index protocol: the leader commits a barrier, answers
// with the index of the last command it has applied, and this node waits
// until its own state machine has applied that far.
func (c *Consensus) ReadPolicies(ctx context.Context, now time.Time) ([]intel.Policy, error) {
	if err := c.WaitConsistent(ctx); err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	return c.fsm.activePolicies(now), nil
}

// WaitConsistent returns once this node's replicated state reflects every
// command committed before the call. Queries made after it (Policies,
// Protected, Roster) are then linearizable.
func (c *Consensus) WaitConsistent(ctx context.Context) error {
	var index uint64
	err := c.retry(ctx, func(ctx context.Context) error {
		i, err := c.readIndexOnce(ctx, 0)
		index = i
		return err
	})
	if err != nil {
		return err
	}
	for c.fsm.appliedIndex() < index {
		if c.isClosed() {
			return ErrClosed
		}
		if !sleepCtx(ctx, readPoll) {
			return fmt.Errorf("apply up to read index %d: %w", index, ctx.Err())
		}
	}
	return nil
}

// readIndexOnce returns the read index: on the leader after a barrier, or
// from the leader.
func (c *Consensus) readIndexOnce(ctx context.Context, hops int) (uint64, error) {
	if c.raft.State() != raft.Leader {
		leader, err := c.leaderPeer()
		if err != nil {
			return 0, err
		}
		if hops >= maxHops {
			return 0, fmt.Errorf("%w: %d", ErrTooManyHops, hops)
		}
		resp, err := c.callResp(ctx, leader, &rpcRequest{Kind: rpcReadIndex, Hops: hops + 1})
		return resp.Index, err
	}
	timeout := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := waitFuture(ctx, c.raft.Barrier(timeout)); err != nil {
		return 0, fmt.Errorf("barrier: %w", err)
	}
	return c.fsm.appliedIndex(), nil
}
