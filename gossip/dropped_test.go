package gossip

import (
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// TestStalledPeerDropsAreCounted: a peer that subscribes and then never
// reads what it is sent (its GossipSub streams are never read) fills
// the node's outbound queue to it; GossipSub drops the RPCs past it,
// and every one is counted (DroppedRPCs, and
// meshward_gossip_rpc_dropped_total), not lost silently.
func TestStalledPeerDropsAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startMeshNode(t, nil, newMemLog(), Options{Registerer: reg})
	r := newRogue(t, nil, DefaultTopic)
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	for _, id := range []string{string(pubsub.GossipSubID_v10), string(pubsub.GossipSubID_v11), string(pubsub.GossipSubID_v12), string(pubsub.GossipSubID_v13)} {
		r.h.SetStreamHandler(protocol.ID(id), func(s network.Stream) { <-stall; s.Reset() })
	}
	connect(t, r.h, n.h)
	waitFor(t, 10*time.Second, "the stalled peer in the node's topic", func() bool { return len(n.g.Peers()) == 1 })
	if got := n.g.DroppedRPCs(); got != 0 {
		t.Fatalf("%d RPCs dropped before any was sent", got)
	}
	// Past the stream's flow-control window and the queue: each publish
	// is flooded to the stalled peer.
	for i := 0; n.g.DroppedRPCs() == 0; i++ {
		if i == 5000 {
			t.Fatalf("no RPC dropped after %d publishes to a peer that reads nothing", i)
		}
		n.publish(t, fmt.Sprintf("203.0.113.%d", i%250+1))
	}
	got := n.g.DroppedRPCs()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported float64
	for _, mf := range mfs {
		if mf.GetName() == "meshward_gossip_rpc_dropped_total" {
			exported = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if exported < float64(got) {
		t.Fatalf("meshward_gossip_rpc_dropped_total %v, DroppedRPCs %d", exported, got)
	}
}
