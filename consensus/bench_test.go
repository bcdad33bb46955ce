package consensus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// BenchmarkCommit measures automatic block commits (each with two signed
// sightings as proof) on 3- and 5-voter clusters over loopback libp2p:
// per-commit latency (p50, p99) proposed sequentially on the leader and
// from a follower (one forward), and throughput with 8 concurrent
// proposers. Every replica's FSM checks every proof; verifies/commit is
// how many ed25519 verifications the whole cluster made per commit.
//
// cache=cold: each replica has a verify cache of its own that has seen
// none of the proofs, as on nodes that did not receive the sightings on
// gossip: the 4,096 envelopes cycle through caches of 256, so a replica
// finds in its cache only what it verified for the same entry (the
// leader's Apply, after its early check). cache=warm: every replica's
// cache holds every proof before the clock starts, as gossip leaves it.
func BenchmarkCommit(b *testing.B) {
	for _, voters := range []int{3, 5} {
		for _, warm := range []bool{false, true} {
			name := fmt.Sprintf("voters=%d/cache=cold", voters)
			size := coldCacheSize
			if warm {
				name, size = fmt.Sprintf("voters=%d/cache=warm", voters), intel.DefaultVerifyCacheSize
			}
			b.Run(name, func(b *testing.B) { benchmarkCommit(b, voters, size, warm) })
		}
	}
}

// coldCacheSize is the replicas' verify cache in the cold runs: far
// smaller than the pool of proofs, larger than what is in flight.
const coldCacheSize = 256

func benchmarkCommit(b *testing.B, voters, cacheSize int, warm bool) {
	nodes := newClusterWith(b, voters, func(c *Config) { c.VerifyCache = intel.NewVerifyCache(cacheSize) })
	leader := leaderOf(nodes)
	if leader == nil {
		b.Fatal("no leader")
	}
	var seq atomic.Int64
	now := time.Now()
	// Each commit is an automatic block carrying two signed sightings
	// (k = 2), verified by every replica's FSM. The proofs are sealed
	// before the clock starts (sealing is the detecting nodes' work): a
	// pool of blocks, cycled; a repeat merges into its policy, still one
	// commit and one check.
	k0, k1 := nodes[0].edKey(b), nodes[1].edKey(b)
	pool := make([]Command, 2048)
	for i := range pool {
		ind, _ := intel.NewIndicator(intel.IPv4, fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255))
		p := intel.NewPolicy(intel.ActionBlock, ind, "bench", nodes[0].id(), now, time.Hour)
		pool[i] = Command{Type: CmdPutPolicy, At: now, Policy: &p, Proofs: [][]byte{
			sealSighting(b, k0, uint64(2*i+1), ind, now), sealSighting(b, k1, uint64(2*i+2), ind, now)}}
	}
	if warm {
		for _, n := range nodes {
			for _, c := range pool {
				for _, raw := range c.Proofs {
					if _, err := n.c.cfg.VerifyCache.Open(raw); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	verified := func() uint64 {
		var v uint64
		for _, n := range nodes {
			v += n.c.cfg.VerifyCache.Stats().Verified
		}
		return v
	}
	next := func(string) Command { return pool[int(seq.Add(1))%len(pool)] }
	ctx := context.Background()
	latency := func(from *testNode) func(b *testing.B) {
		return func(b *testing.B) {
			lat := make([]time.Duration, 0, 1024)
			v0 := verified()
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if err := from.c.Propose(ctx, next(from.id())); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			waitApplied(b, nodes)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "commits/s")
			b.ReportMetric(float64(verified()-v0)/float64(len(lat)), "verifies/commit")
		}
	}
	b.Run("leader", latency(leader))
	b.Run("follower", latency(followerOf(nodes)))
	b.Run("parallel", func(b *testing.B) {
		var mu sync.Mutex
		var failed error
		v0 := verified()
		start := time.Now()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := leader.c.Propose(ctx, next(leader.id())); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
			}
		})
		if failed != nil {
			b.Fatal(failed)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
		waitApplied(b, nodes)
		b.ReportMetric(float64(verified()-v0)/float64(b.N), "verifies/commit")
	})
}

// waitApplied waits until every node has applied what the leader has, so
// that a run's verifications are counted in it and the next run starts
// with the followers caught up.
func waitApplied(tb testing.TB, nodes []*testNode) {
	tb.Helper()
	leader := leaderOf(nodes)
	if leader == nil {
		return
	}
	index := leader.c.fsm.appliedIndex()
	waitFor(tb, 30*time.Second, "every node to apply the run", func() bool {
		for _, n := range nodes {
			if n.c.fsm.appliedIndex() < index {
				return false
			}
		}
		return true
	})
}
