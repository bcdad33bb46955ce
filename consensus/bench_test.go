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
// sightings as proof) on 3- and 5-voter clusters over
// loopback libp2p: per-commit latency (p50, p99) proposed sequentially on
// the leader and from a follower (one forward), and throughput with 8
// concurrent proposers.
func BenchmarkCommit(b *testing.B) {
	for _, voters := range []int{3, 5} {
		b.Run(fmt.Sprintf("voters=%d", voters), func(b *testing.B) {
			nodes := newCluster(b, voters)
			leader := leaderOf(nodes)
			if leader == nil {
				b.Fatal("no leader")
			}
			var seq atomic.Int64
			now := time.Now()
			// Each commit is an automatic block carrying two signed
			// sightings (k = 2), verified by every replica's FSM. The
			// proofs are sealed before the clock starts (sealing is the
			// detecting nodes' work): a pool of blocks, cycled; a repeat
			// merges into its policy, still one commit and one check.
			k0, k1 := nodes[0].edKey(b), nodes[1].edKey(b)
			pool := make([]Command, 512)
			for i := range pool {
				ind, _ := intel.NewIndicator(intel.IPv4, fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255))
				p := intel.NewPolicy(intel.ActionBlock, ind, "bench", nodes[0].id(), now, time.Hour)
				pool[i] = Command{Type: CmdPutPolicy, At: now, Policy: &p, Proofs: [][]byte{
					sealSighting(b, k0, uint64(2*i+1), ind, now), sealSighting(b, k1, uint64(2*i+2), ind, now)}}
			}
			next := func(string) Command { return pool[int(seq.Add(1))%len(pool)] }
			ctx := context.Background()
			latency := func(from *testNode) func(b *testing.B) {
				return func(b *testing.B) {
					lat := make([]time.Duration, 0, 1024)
					start := time.Now()
					for b.Loop() {
						t0 := time.Now()
						if err := from.c.Propose(ctx, next(from.id())); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
					}
					elapsed := time.Since(start)
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
					b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "commits/s")
				}
			}
			b.Run("leader", latency(leader))
			b.Run("follower", latency(followerOf(nodes)))
			b.Run("parallel", func(b *testing.B) {
				var mu sync.Mutex
				var failed error
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
			})
		})
	}
}
