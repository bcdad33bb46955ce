package gossip

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
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

// TestMeshDegree: a node with Options.MeshDegree 4 grafts three or four
// of the eight peers in its topic (up to D, 4, whenever its mesh holds
// fewer than Dlo, 3: a heartbeat may find only three peers there yet),
// where GossipSub's degree would graft five or six. The peers never
// graft on their own.
func TestMeshDegree(t *testing.T) {
	const heartbeat = 50 * time.Millisecond
	n := startMeshNode(t, nil, newMemLog(), Options{MeshDegree: 4, RouterHeartbeat: heartbeat})
	never := gossipSubParams(time.Hour)
	never.HeartbeatInitialDelay = time.Hour
	quiet := pubsub.WithGossipSubParams(never)
	var watches []*graftWatch
	for range 8 {
		w := &graftWatch{tracer: newTracer()}
		r := newRogue(t, nil, DefaultTopic, quiet, pubsub.WithRawTracer(w))
		connect(t, r.h, n.h)
		watches = append(watches, w)
	}
	waitFor(t, 10*time.Second, "the node to see its eight peers in the topic", func() bool { return len(n.g.Peers()) == 8 })
	grafts := func() (sum int64) {
		for _, w := range watches {
			sum += w.grafts.Load()
		}
		return sum
	}
	waitFor(t, time.Minute, "three grafts", func() bool { return grafts() >= 3 })
	// Twenty more heartbeats: a node meshing GossipSub's six peers, or
	// grafting past its degree, would have sent more.
	time.Sleep(20 * heartbeat)
	if g := grafts(); g < 3 || g > 4 {
		t.Fatalf("a node of mesh degree 4 sent %d GRAFTs to eight peers, want 3 or 4", g)
	}
}

// TestMeshParams: the degrees meshParams derives keep GossipSub's rules
// for every degree Options accepts, and Options refuses the others.
func TestMeshParams(t *testing.T) {
	for d := MinMeshDegree; d <= MaxMeshDegree; d++ {
		p := routerParams(Options{MeshDegree: d})
		if p.D != d || p.Dlo != d-1 || p.Dhi != d+d/2 || p.Dlazy != d {
			t.Fatalf("degree %d: D %d, Dlo %d, Dhi %d, Dlazy %d", d, p.D, p.Dlo, p.Dhi, p.Dlazy)
		}
		if !(p.Dout < p.Dlo && p.Dout < p.D/2 && p.Dout >= 1 && p.Dscore <= p.Dhi && p.Dscore >= 1) {
			t.Fatalf("degree %d: Dout %d, Dscore %d break GossipSub's rules", d, p.Dout, p.Dscore)
		}
	}
	def := pubsub.DefaultGossipSubParams()
	if p := routerParams(Options{}); p.D != def.D || p.Dlo != def.Dlo || p.Dhi != def.Dhi {
		t.Fatalf("no degree given: D %d/%d/%d, want GossipSub's %d/%d/%d", p.D, p.Dlo, p.Dhi, def.D, def.Dlo, def.Dhi)
	}
	for _, d := range []int{-1, 1, MinMeshDegree - 1, MaxMeshDegree + 1} {
		o := Options{MeshDegree: d, Handler: HandlerFunc(func(context.Context, *intel.Envelope, peer.ID) error { return nil })}
		err := o.setDefaults()
		if err == nil || !strings.Contains(err.Error(), "MeshDegree") {
			t.Fatalf("degree %d: %v, want an error naming MeshDegree", d, err)
		}
	}
	// GossipSub itself takes the largest degree.
	if n := startMeshNode(t, nil, newMemLog(), Options{MeshDegree: MaxMeshDegree}); n.g == nil {
		t.Fatal("no node")
	}
}

// GossipTargets fixes the peers gossip goes to (Dlazy, and no share of
// a large neighbourhood); 0 keeps GossipSub's; out of range is refused,
// naming the option.
func TestGossipTargets(t *testing.T) {
	p := routerParams(Options{MeshDegree: 4, GossipTargets: 3})
	if p.Dlazy != 3 || p.GossipFactor != 0 || p.D != 4 {
		t.Fatalf("targets 3: Dlazy %d, gossip factor %v, D %d", p.Dlazy, p.GossipFactor, p.D)
	}
	def := pubsub.DefaultGossipSubParams()
	if p := routerParams(Options{MeshDegree: 4}); p.Dlazy != 4 || p.GossipFactor != def.GossipFactor {
		t.Fatalf("no targets: Dlazy %d, gossip factor %v; want the degree and GossipSub's %v", p.Dlazy, p.GossipFactor, def.GossipFactor)
	}
	for _, n := range []int{-1, MaxMeshDegree + 1} {
		o := Options{GossipTargets: n, Handler: HandlerFunc(func(context.Context, *intel.Envelope, peer.ID) error { return nil })}
		if err := o.setDefaults(); err == nil || !strings.Contains(err.Error(), "GossipTargets") {
			t.Fatalf("targets %d: %v, want an error naming GossipTargets", n, err)
		}
	}
	if n := startMeshNode(t, nil, newMemLog(), Options{MeshDegree: 4, GossipTargets: 4}); n.g == nil {
		t.Fatal("no node")
	}
}

// pushWatch records how a peer first got a message of the topic: pushed
// (in an RPC before any IHAVE of the topic reached it) or fetched after
// gossip.
type pushWatch struct {
	*tracer
	mu                 sync.Mutex
	ihave, got, pushed bool
}

func (w *pushWatch) RecvRPC(rpc *pubsub.RPC) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ih := range rpc.GetControl().GetIhave() {
		if ih.GetTopicID() == DefaultTopic && len(ih.GetMessageIDs()) > 0 {
			w.ihave = true
		}
	}
	for _, m := range rpc.GetPublish() {
		if m.GetTopic() == DefaultTopic && !w.got {
			w.got, w.pushed = true, !w.ihave
		}
	}
}

func (w *pushWatch) state() (got, pushed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got, w.pushed
}

// TestMeshPublishOnly: a node sends its own message to every peer of the
// topic (flood publishing), or with MeshPublishOnly to its mesh alone,
// the others fetching it after its gossip.
func TestMeshPublishOnly(t *testing.T) {
	for _, c := range []struct {
		meshOnly bool
		lo, hi   int // peers pushed the message
	}{{false, 8, 8}, {true, 3, 4}} {
		t.Run(fmt.Sprintf("mesh only %v", c.meshOnly), func(t *testing.T) {
			const heartbeat = 50 * time.Millisecond
			n := startMeshNode(t, nil, newMemLog(), Options{MeshDegree: 4, RouterHeartbeat: heartbeat, MeshPublishOnly: c.meshOnly})
			never := gossipSubParams(time.Hour)
			never.HeartbeatInitialDelay = time.Hour
			quiet := pubsub.WithGossipSubParams(never)
			var grafts []*graftWatch
			var pushes []*pushWatch
			for range 8 {
				g, p := &graftWatch{tracer: newTracer()}, &pushWatch{tracer: newTracer()}
				r := newRogue(t, nil, DefaultTopic, quiet, pubsub.WithRawTracer(g), pubsub.WithRawTracer(p))
				connect(t, r.h, n.h)
				grafts, pushes = append(grafts, g), append(pushes, p)
			}
			waitFor(t, 10*time.Second, "the node to see its eight peers in the topic", func() bool { return len(n.g.Peers()) == 8 })
			waitFor(t, time.Minute, "three grafts", func() bool {
				sum := int64(0)
				for _, g := range grafts {
					sum += g.grafts.Load()
				}
				return sum >= 3
			})
			time.Sleep(5 * heartbeat) // the mesh settled at 3 or 4
			n.publish(t, "198.51.100.80")
			waitFor(t, 10*time.Second, "every peer to get the message", func() bool {
				for _, p := range pushes {
					if got, _ := p.state(); !got {
						return false
					}
				}
				return true
			})
			pushed := 0
			for _, p := range pushes {
				if _, ok := p.state(); ok {
					pushed++
				}
			}
			if pushed < c.lo || pushed > c.hi {
				t.Fatalf("mesh only %v: the publisher pushed its message to %d of 8 peers, want %d to %d", c.meshOnly, pushed, c.lo, c.hi)
			}
		})
	}
}
