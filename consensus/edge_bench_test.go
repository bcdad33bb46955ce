package consensus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// BenchmarkEdgeCommitToApply measures, on a mesh of three voters, a
// standby and an edge on loopback, the time from an operator block's
// proposal through a server to its being in force on the edge: the
// commit, the leader's publisher (every 20ms at most), GossipSub, and the
// edge's checks and apply.
func BenchmarkEdgeCommitToApply(b *testing.B) { benchEdgeCommitToApply(b, 1) }

// BenchmarkEdgeCommitToApplyEdges8 is the same with eight edges, timed
// until the last has the block in force: what the certified topic costs
// edges shows in the CPU time per operation (the voters' certificates
// aggregated by the leader, or each voter's published to every edge).
func BenchmarkEdgeCommitToApplyEdges8(b *testing.B) { benchEdgeCommitToApply(b, 8) }

func benchEdgeCommitToApply(b *testing.B, edges int) {
	m := newEdgeMesh(b, edges, false, true, func(*Config) {})
	through := m.servers()[1]
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		ip := fmt.Sprintf("198.51.%d.%d", 100+i/250, 1+i%250)
		ind, err := intel.ParseIndicator(ip)
		if err != nil {
			b.Fatal(err)
		}
		id := intel.PolicyID(intel.ActionBlock, ind)
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := through.operate(actx, blockOp(b, ip, time.Hour)); err != nil {
			b.Fatal(err)
		}
		for _, edge := range m.edges() {
			for !hasPolicy(edge.c, id) {
				select {
				case <-edge.c.Changes():
				case <-actx.Done():
					b.Fatalf("block %d not applied on edge %s", i, shortID(edge.id()))
				}
			}
		}
		cancel()
	}
}
