package consensus

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/meshward/meshward/intel"
)

// The model: a few block policies, each present or not. Writes that failed
// may or may not have taken effect (Propose's error does not say), so they
// are recorded as never returning and may step either way.
type linOp uint8

const (
	linPut linOp = iota
	linRevoke
	linRead
)

type linInput struct {
	op  linOp
	key int
}

type linOutput struct {
	present bool // read result
	unknown bool // a write whose outcome is unknown
}

var linModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, o := range h {
			k := o.Input.(linInput).key
			byKey[k] = append(byKey[k], o)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() []any { return []any{false} },
	Step: func(state, input, output any) []any {
		present, in, out := state.(bool), input.(linInput), output.(linOutput)
		switch in.op {
		case linPut:
			if out.unknown {
				return []any{present, true}
			}
			return []any{true}
		case linRevoke:
			if out.unknown {
				return []any{present, false}
			}
			return []any{false}
		default:
			if out.present == present {
				return []any{present}
			}
			return nil
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		switch in.op {
		case linPut:
			return fmt.Sprintf("put(%d) unknown=%v", in.key, out.unknown)
		case linRevoke:
			return fmt.Sprintf("revoke(%d) unknown=%v", in.key, out.unknown)
		}
		return fmt.Sprintf("read(%d) -> %v", in.key, out.present)
	},
}

func TestLinearizablePoliciesThroughLeaderFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("long history")
	}
	nodes := newCluster(t, 3)
	const keys = 3
	policies := make([]intel.Policy, keys)
	for k := range keys {
		policies[k] = intel.NewPolicy(intel.ActionBlock, mustIndicator(t, fmt.Sprintf("192.0.2.%d", k+1)), "lin", "operator:test", time.Now(), 24*time.Hour)
	}

	base := time.Now()
	stamp := func() int64 { return time.Since(base).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		stop    atomic.Bool
		wg      sync.WaitGroup
		ops     atomic.Int64
		done    atomic.Int64
	)
	const opsPerClient = 120
	client := 0
	for _, n := range nodes {
		for range 2 {
			id := client
			client++
			wg.Go(func() {
				defer done.Add(1)
				for i := 0; i < opsPerClient && !stop.Load(); i++ {
					in := linInput{op: linOp((id + i) % 3), key: (id*7 + i*5) % keys}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					call := stamp()
					var out linOutput
					var err error
					switch in.op {
					case linPut:
						p := policies[in.key]
						err = n.c.Propose(ctx, Command{Type: CmdPutPolicy, Policy: &p})
					case linRevoke:
						err = n.c.Propose(ctx, Command{Type: CmdRevokePolicy, PolicyID: policies[in.key].ID})
					case linRead:
						var ps []intel.Policy
						ps, err = n.c.ReadPolicies(ctx, time.Now())
						for _, p := range ps {
							out.present = out.present || p.ID == policies[in.key].ID
						}
					}
					ret := stamp()
					cancel()
					if err != nil {
						if in.op == linRead {
							continue // a failed read has no effect
						}
						out.unknown, ret = true, math.MaxInt64
					}
					ops.Add(1)
					mu.Lock()
					history = append(history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
					mu.Unlock()
					if err != nil && n.c.isClosed() {
						return
					}
				}
			})
		}
	}
	// Let the clients run, then kill the leader under them.
	waitFor(t, 60*time.Second, "a first share of the history", func() bool { return ops.Load() >= 150 })
	old := leaderOf(nodes)
	if old == nil {
		t.Fatal("no leader")
	}
	old.stop(t)
	at := ops.Load()
	waitFor(t, 90*time.Second, "history after the failover", func() bool { return ops.Load() >= at+200 || done.Load() == int64(client) })
	stop.Store(true)
	wg.Wait()

	t.Logf("%d operations checked", len(history))
	res, info := porcupine.CheckOperationsVerbose(linModel.ToModel(), history, 60*time.Second)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := t.TempDir() + "/history.html"
		if err := porcupine.VisualizePath(linModel.ToModel(), info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatal("history is not linearizable")
	default:
		t.Fatalf("linearizability check gave %v", res)
	}
}

func TestLinearizabilityModelCatchesStaleRead(t *testing.T) {
	m := linModel.ToModel()
	ok := []porcupine.Operation{
		{ClientId: 0, Input: linInput{op: linPut}, Call: 0, Output: linOutput{}, Return: 10},
		{ClientId: 1, Input: linInput{op: linRead}, Call: 5, Output: linOutput{present: false}, Return: 15},
		{ClientId: 1, Input: linInput{op: linRevoke}, Call: 20, Output: linOutput{unknown: true}, Return: math.MaxInt64},
		{ClientId: 2, Input: linInput{op: linRead}, Call: 30, Output: linOutput{present: true}, Return: 40},
	}
	if !porcupine.CheckOperations(m, ok) {
		t.Fatal("a linearizable history was refused")
	}
	stale := []porcupine.Operation{
		{ClientId: 0, Input: linInput{op: linPut}, Call: 0, Output: linOutput{}, Return: 10},
		{ClientId: 1, Input: linInput{op: linRead}, Call: 20, Output: linOutput{present: false}, Return: 30},
	}
	if porcupine.CheckOperations(m, stale) {
		t.Fatal("a stale read passed")
	}
}
