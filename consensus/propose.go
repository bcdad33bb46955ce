package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Propose commits cmd to the mesh from any node: it is applied directly on
// the leader, or forwarded over libp2p to the leader, and retried across
// leader changes until ctx ends. It returns once the command is committed
// and applied on the leader, with the FSM's refusal if it refused it
// (ErrProtected, ErrAllowed, ErrInvalidCommand; test with errors.Is).
// Propose fills cmd.At with the local clock when it is zero.
//
// Cancelling ctx stops the wait, not the commit: a command handed to raft
// may still be committed after Propose returned ctx's error. Every command
// is idempotent, so proposing it again is safe.
func (c *Consensus) Propose(ctx context.Context, cmd Command) error {
	if cmd.At.IsZero() {
		cmd.At = time.Now().UTC()
	}
	if rerr := cmd.validate(); rerr != nil {
		c.fsm.count(rerr, 0)
		return fmt.Errorf("propose %s: %w", cmd.Type, rerr)
	}
	data, err := cmd.Encode()
	if err != nil {
		return fmt.Errorf("propose: %w", err)
	}
	if err := c.retryCommand(ctx, cmd.Type, data, func(ctx context.Context) error { return c.proposeOnce(ctx, data, nil, 0) }); err != nil {
		return fmt.Errorf("propose %s: %w", cmd.Type, err)
	}
	return nil
}

// retryCommand is retry for the proposal of one encoded command, whose
// attempts may end without knowing whether the command was committed (a
// lost leadership, a reset stream, a timeout). An operator command
// carries a nonce the mesh accepts once, so a later attempt of the same
// command after such an attempt may be refused as replayed_nonce: the
// nonce was used by this very command (a signed command names its
// nonce), committed by the earlier attempt, and the proposal succeeded.
func (c *Consensus) retryCommand(ctx context.Context, t CommandType, data []byte, attempt func(context.Context) error) error {
	uncertain := false
	return c.retry(ctx, func(ctx context.Context) error {
		err := attempt(ctx)
		switch {
		case err == nil:
		case uncertain && t == CmdOperator && RefusalReason(err) == reasonReplayedNonce:
			c.log.Debug("an earlier attempt committed the operator command", "err", err)
			return nil
		case !final(err):
			uncertain = true
		}
		return err
	})
}

// reasonReplayedNonce is the FSM's refusal reason for an operator command
// whose nonce was used before.
const reasonReplayedNonce = "replayed_nonce"

// retry runs attempt until it succeeds, fails finally, or ctx ends.
func (c *Consensus) retry(ctx context.Context, attempt func(context.Context) error) error {
	backoff := 20 * time.Millisecond
	for {
		if c.isClosed() {
			return ErrClosed
		}
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		if err == nil || final(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		c.log.Debug("retrying", "err", err, "after", backoff)
		if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// proposeOnce applies data here if we lead, or forwards it to the leader.
// cmd, when not nil, is DecodeCommand(data), already decoded by the
// caller.
func (c *Consensus) proposeOnce(ctx context.Context, data []byte, cmd *Command, hops int) error {
	if c.raft.State() == raft.Leader {
		return c.applyDecoded(ctx, data, cmd)
	}
	leader, err := c.leaderPeer()
	if err != nil {
		return err
	}
	if hops >= maxHops {
		return fmt.Errorf("%w: %d", ErrTooManyHops, hops)
	}
	return c.fwd.forward(ctx, leader, hops+1, data)
}

func (c *Consensus) leaderPeer() (peer.ID, error) {
	if r := c.edge.Load(); r != nil && !r.promoted.Load() {
		// An edge hears no raft leader: a server forwards for it.
		if s := r.servers(); len(s) > 0 {
			return s[0], nil
		}
		return "", fmt.Errorf("%w: this edge knows no server", ErrNoLeader)
	}
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return "", ErrNoLeader
	}
	p, err := peer.Decode(string(id))
	if err != nil {
		return "", fmt.Errorf("leader id %q: %w", id, err)
	}
	if p == c.h.ID() {
		return "", fmt.Errorf("%w: we are named leader but are not leading", ErrNoLeader)
	}
	return p, nil
}

// staticCheck refuses a forwarded command that no state could accept,
// before it travels further, and returns it decoded.
func (c *Consensus) staticCheck(data []byte) (Command, error) {
	cmd, err := DecodeCommand(data)
	if err != nil {
		rerr := refuse(CommandType(0), "malformed", ErrInvalidCommand, "%v", err)
		if len(data) > 0 {
			rerr.Command = CommandType(data[0])
		}
		c.fsm.count(rerr, 0)
		return Command{}, rerr
	}
	if rerr := cmd.validate(); rerr != nil {
		c.fsm.count(rerr, 0)
		return Command{}, rerr
	}
	return cmd, nil
}

// applyLocal appends data to the log (we must be leader) and waits for it
// to be applied, returning the FSM's response error.
func (c *Consensus) applyLocal(ctx context.Context, data []byte) error {
	return c.applyDecoded(ctx, data, nil)
}

// applyDecoded is applyLocal for data the caller may have decoded
// already: decoded, when not nil, is DecodeCommand(data) (a forwarded
// command the RPC server has checked), so that the leader decodes each
// entry once. It is kept for Apply (the decode memo): nobody may change
// it afterwards.
func (c *Consensus) applyDecoded(ctx context.Context, data []byte, decoded *Command) error {
	var cmd Command
	if decoded != nil {
		cmd = *decoded
	} else {
		var err error
		if cmd, err = DecodeCommand(data); err != nil {
			return err
		}
	}
	if skew := time.Since(cmd.At); skew > maxClockSkew || skew < -maxClockSkew {
		rerr := refuse(cmd.Type, "clock_skew", ErrInvalidCommand, "timestamp %s is %s from the leader's clock", cmd.At.Format(time.RFC3339), skew.Round(time.Second))
		c.fsm.count(rerr, 0)
		return rerr
	}
	// Refuse early what Apply would refuse, with the same reason, so that
	// a refused command costs no log entry. The check shares the decoding
	// above, and the proofs it verifies are only hashed by Apply here; it
	// keeps cmd for Apply here (the decode memo), so cmd is only read
	// from now on.
	if err := c.fsm.precheck(data, &cmd); err != nil {
		return err
	}
	enqueue := attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		enqueue = max(time.Until(dl), time.Millisecond)
	}
	f := c.raft.Apply(data, enqueue)
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // raft resolves every future, at the latest on shutdown
	select {
	case err := <-done:
		if err != nil {
			// Not appended, or lost with the leadership: the memo
			// keeps no decoding for an Apply that may never come.
			c.fsm.decoded.drop(data)
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return ErrClosed
		}
		if err != nil {
			return fmt.Errorf("apply %s: %w", cmd.Type, err)
		}
		if rerr, ok := f.Response().(error); ok && rerr != nil {
			return rerr
		}
		return nil
	case <-ctx.Done():
		c.fsm.decoded.drop(data)
		return ctx.Err()
	}
}
