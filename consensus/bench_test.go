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

// BenchmarkCommit measures policy commits on 3- and 5-voter clusters over
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
			next := func(author string) Command {
				i := seq.Add(1)
				ind, _ := intel.NewIndicator(intel.IPv4, fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255))
				p := intel.NewPolicy(intel.ActionBlock, ind, "bench", author, now, time.Hour)
				return Command{Type: CmdPutPolicy, At: now, Policy: &p}
			}
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
