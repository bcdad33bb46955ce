package consensus

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRaftReadsRecentEntriesFromTheCache: on a 3-voter cluster with
// durable log stores, replicating and applying a run of commits reads
// them back from the stores: the leader sends them to the followers and
// the followers apply them from the log cache. (Without the cache each
// commit costs six reads; a few are allowed for a replication stream
// that a loaded machine makes restart.)
func TestRaftReadsRecentEntriesFromTheCache(t *testing.T) {
	times := &storeTimes{}
	nodes := newDurableCluster(t, 3, times, func(*Config) {})
	leader := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	waitApplied(t, nodes)
	before := times.gets.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 100
	for i := range n {
		if err := leader.c.Propose(ctx, proveBlock(t, fmt.Sprintf("203.0.113.%d", i), nodes[0], nodes[1])); err != nil {
			t.Fatalf("propose %d: %v", i, err)
		}
	}
	waitApplied(t, nodes)
	if got := times.gets.Load() - before; got > n/10 {
		t.Fatalf("the stores were read %d times while %d entries were replicated to and applied on 3 nodes; want at most %d", got, n, n/10)
	}
}
