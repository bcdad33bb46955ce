package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The Byzantine tests replay attacks as a compromised member would: its
// entry goes through the propose RPC to the leader (refused early, with
// the reason Apply would give) and straight into the leader's raft log
// (raft.Apply with the raw bytes, as a compromised leader could), where
// every replica's FSM must refuse it, count it and change nothing.

// fsmState is the FSM's state as bytes, without the raft index and the
// chain head (a refused entry still advances them); the clock is kept: a
// refusal must not move it.
func fsmState(tb testing.TB, c *Consensus) []byte { return fsmBytes(tb, c.fsm) }

// fsmBytes is fsmState of an FSM.
func fsmBytes(tb testing.TB, f *fsm) []byte {
	tb.Helper()
	s, err := f.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	st := s.(*fsmSnapshot).state()
	st.Index, st.Chain = 0, nil
	b, err := json.Marshal(st)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// byzantineCluster is a settled three-node mesh.
func byzantineCluster(t *testing.T) []*testNode {
	t.Helper()
	nodes := newCluster(t, 3)
	waitFor(t, 30*time.Second, "every node to hold the mesh ID", func() bool {
		for _, n := range nodes {
			if n.c.MeshID() == "" {
				return false
			}
		}
		return true
	})
	return nodes
}

// attack sends cmd from a follower through the propose RPC, then writes
// it straight into the leader's log, and checks that both were refused
// with reason, that every node counted the refusal in its FSM, and that no
// node's state changed.
func attack(t *testing.T, nodes []*testNode, cmd Command, reason string) {
	t.Helper()
	data, err := cmd.Encode()
	if err != nil {
		t.Fatalf("encode the attack: %v", err)
	}
	attackRaw(t, nodes, cmd.Type, data, reason)
}

func attackRaw(t *testing.T, nodes []*testNode, typ CommandType, data []byte, reason string) {
	t.Helper()
	// On a loaded machine the leader may step down at any moment: every
	// step that needs the leader waits for one, and retries when
	// leadership moves (never when the attack is answered).
	leader := waitLeader(t, nodes)
	// Every node first applies what the leader has (a token just created).
	applied := leader.c.fsm.appliedIndex()
	for _, n := range nodes {
		waitFor(t, 20*time.Second, "node "+shortID(n.id())+" to catch up before the attack", func() bool { return n.c.fsm.appliedIndex() >= applied })
	}
	before := make([][]byte, len(nodes))
	counted := make([]uint64, len(nodes))
	key := typ.String() + "/" + reason
	for i, n := range nodes {
		before[i] = fsmState(t, n.c)
		counted[i] = n.c.RefusalCounts()[key]
	}

	// Through the propose RPC, as a member forwards a proposal.
	var err error
	for deadline := time.Now().Add(time.Minute); ; {
		leader = waitLeader(t, nodes)
		attacker := followerOf(nodes)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = callPeer(ctx, attacker.h, leader.h.ID(), &rpcRequest{Kind: rpcPropose, Command: data})
		cancel()
		if !leadershipMoved(err) || time.Now().After(deadline) {
			break
		}
	}
	if err == nil {
		t.Fatalf("the propose RPC accepted the attack")
	}
	if got := RefusalReason(err); got != reason {
		t.Fatalf("propose RPC: refused with reason %q (%v), want %q", got, err, reason)
	}

	// Straight into the leader's log.
	var f raft.ApplyFuture
	for deadline := time.Now().Add(time.Minute); ; {
		leader = waitLeader(t, nodes)
		f = leader.c.raft.Apply(data, 10*time.Second)
		err := f.Error()
		if err == nil {
			break
		}
		if !leadershipMoved(err) || time.Now().After(deadline) {
			t.Fatalf("raft apply: %v", err)
		}
	}
	rerr, _ := f.Response().(error)
	if got := RefusalReason(rerr); got != reason {
		t.Fatalf("leader's FSM: refused with reason %q (%v), want %q", got, rerr, reason)
	}
	index := f.Index()
	for i, n := range nodes {
		waitFor(t, 20*time.Second, "node "+shortID(n.id())+" to apply the attack", func() bool { return n.c.fsm.appliedIndex() >= index })
		if after := fsmState(t, n.c); !bytes.Equal(before[i], after) {
			t.Errorf("node %s: state changed by the attack:\nbefore %s\nafter  %s", shortID(n.id()), before[i], after)
		}
		if got := n.c.RefusalCounts()[key]; got <= counted[i] {
			t.Errorf("node %s: refusal %s counted %d times, want more than %d", shortID(n.id()), key, got, counted[i])
		}
	}
}

// waitLeader waits for a leader among nodes.
func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = leaderOf(nodes); return leader != nil })
	return leader
}

// leadershipMoved reports whether err says only that the leader changed
// under the request, which the attack helpers retry.
func leadershipMoved(err error) bool {
	return errors.Is(err, ErrNoLeader) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress)
}
