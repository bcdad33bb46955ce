package gossip

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// BenchmarkPropagation measures the time from Publish until the last node's
// Handler has the sighting, in meshes of 10 and 50 nodes (each node linked
// to node 0 and two random earlier nodes); reported as p50 and p99 in ms.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(map[int]string{10: "nodes=10", 50: "nodes=50"}[n], func(b *testing.B) { benchPropagation(b, n) })
	}
}

func benchPropagation(b *testing.B, n int) {
	var target atomic.Pointer[string] // "origin/seq" being timed
	var got atomic.Int64
	logs := make([]*memLog, n)
	nodes := make([]*meshNode, n)
	for i := range nodes {
		logs[i] = newMemLog()
		l := logs[i]
		nodes[i] = startMeshNode(b, nil, l, Options{Handler: HandlerFunc(func(ctx context.Context, env *intel.Envelope, from peer.ID) error {
			if p := target.Load(); p != nil && *p == envKey(env.OriginID(), env.Seq) {
				got.Add(1)
			}
			return l.HandleEnvelope(ctx, env, from)
		})})
		if i > 0 {
			connect(b, nodes[i].h, nodes[0].h)
			for range 2 {
				if j := rand.N(i); j != 0 {
					connect(b, nodes[i].h, nodes[j].h)
				}
			}
		}
	}
	warmMesh(b, nodes, nodes[n-1])
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		pub := nodes[rand.N(n)]
		pub.seq++
		raw, err := intel.SealJSON(pub.key, intel.KindSighting, pub.seq, time.Now(), testSighting("198.51.100.5"))
		if err != nil {
			b.Fatal(err)
		}
		key := envKey(pub.id(), pub.seq)
		got.Store(0)
		target.Store(&key)
		start := time.Now()
		if err := pub.g.Publish(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
		deadline := start.Add(30 * time.Second)
		for got.Load() < int64(n) {
			if time.Now().After(deadline) {
				b.Fatalf("sighting reached %d of %d nodes in 30 s", got.Load(), n)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
