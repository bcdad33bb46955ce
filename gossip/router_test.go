package gossip

import (
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
)

// graftWatch counts the GRAFTs a bare peer receives on DefaultTopic.
type graftWatch struct {
	*tracer
	grafts atomic.Int64
}

func (w *graftWatch) RecvRPC(rpc *pubsub.RPC) {
	for _, g := range rpc.GetControl().GetGraft() {
		if g.GetTopicID() == DefaultTopic {
			w.grafts.Add(1)
		}
	}
}

// TestRouterHeartbeat: Options.RouterHeartbeat is GossipSub's heartbeat,
// the only time a node grafts a peer that subscribed after it joined. A
// node with an hour's heartbeat has not grafted such a peer after two
// heartbeats of a node with GossipSub's own, which grafts each of its
// peers in turn. The peers are bare GossipSubs that never graft on their
// own (no heartbeat within the hour).
func TestRouterHeartbeat(t *testing.T) {
	slow := startMeshNode(t, nil, newMemLog(), Options{RouterHeartbeat: time.Hour})
	usual := startMeshNode(t, nil, newMemLog(), Options{})
	never := gossipSubParams(time.Hour)
	never.HeartbeatInitialDelay = time.Hour
	quiet := pubsub.WithGossipSubParams(never)
	bare := func() (host.Host, *graftWatch) {
		w := &graftWatch{tracer: newTracer()}
		r := newRogue(t, nil, DefaultTopic, quiet, pubsub.WithRawTracer(w))
		return r.h, w
	}
	grafted := func(what string, to *meshNode) {
		t.Helper()
		h, w := bare()
		connect(t, h, to.h)
		waitFor(t, time.Minute, what, func() bool { return w.grafts.Load() > 0 })
	}
	// First a heartbeat of the usual node, so that the slow one, started
	// before it, is past its first heartbeat (100 ms after its start).
	grafted("a first graft by the usual node", usual)
	h, w := bare()
	connect(t, h, slow.h)
	waitFor(t, time.Minute, "the slow node to see its peer in the topic", func() bool { return len(slow.g.Peers()) == 1 })
	// Two more grafts of the usual node, each after the last: at least
	// one heartbeat of GossipSub's own since the slow node saw its peer.
	grafted("a second graft by the usual node", usual)
	grafted("a third graft by the usual node", usual)
	if n := w.grafts.Load(); n != 0 {
		t.Fatalf("the node with an hour's heartbeat grafted %d times within a heartbeat of GossipSub's own", n)
	}
}
