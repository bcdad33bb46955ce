package gossip

import (
	"context"
	"crypto/ed25519"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// barrierHandler, once armed, stores into log only once n calls are in
// flight at the same time; until then each call waits (or fails when its
// context ends). A caller that hands envelopes on one at a time never
// opens it. Unarmed, it stores at once.
type barrierHandler struct {
	log      *memLog
	n        int32
	armed    atomic.Bool
	inflight atomic.Int32
	once     sync.Once
	open     chan struct{}
}

func newBarrierHandler(log *memLog, n int32, armed bool) *barrierHandler {
	b := &barrierHandler{log: log, n: n, open: make(chan struct{})}
	b.armed.Store(armed)
	return b
}

func (b *barrierHandler) HandleEnvelope(ctx context.Context, env *intel.Envelope, from peer.ID) error {
	if !b.armed.Load() {
		return b.log.HandleEnvelope(ctx, env, from)
	}
	if b.inflight.Add(1) >= b.n {
		b.once.Do(func() { close(b.open) })
	}
	defer b.inflight.Add(-1)
	select {
	case <-b.open:
		return b.log.HandleEnvelope(ctx, env, from)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSyncAdmitsConcurrently: the envelopes of one anti-entropy session
// reach the Handler several at a time, so that a store committing in
// groups can write them together, and all of them are accepted once the
// session ends.
func TestSyncAdmitsConcurrently(t *testing.T) {
	_, memberKey := newKey(t)
	memberID := intel.NodeID(memberKey.Public().(ed25519.PublicKey))
	now := time.Now()
	const n = 32
	var frames [][]byte
	for i := range n {
		frames = append(frames, seal(t, memberKey, uint64(i+1), now.Add(-time.Hour)))
	}
	rogue := syncRogue(t, frames)

	log := newMemLog()
	barrier := newBarrierHandler(log, 8, true)
	victim := startMeshNode(t, nil, log, Options{
		Log: log, Roster: rosterSet{memberID: true}, Handler: barrier,
		// Bounds how long a lone call waits at the barrier.
		HandlerTimeout: 3 * time.Second,
	})
	connect(t, victim.h, rogue) // the connection triggers a session
	waitFor(t, 20*time.Second, "the session's envelopes to be accepted or refused", func() bool {
		return victim.g.SyncAccepted() == n || len(victim.g.SyncRejected()) > 0
	})
	select {
	case <-barrier.open:
	default:
		t.Fatalf("no 8 envelopes were in the Handler at once; rejections %v", victim.g.SyncRejected())
	}
	if got := victim.g.SyncAccepted(); got != n || log.count(memberID) != n {
		t.Fatalf("accepted %d, stored %d; want %d; rejections %v", got, log.count(memberID), n, victim.g.SyncRejected())
	}
}

// TestValidatorRunsConcurrently: GossipSub runs the topic validator
// asynchronously, many messages at once, so that envelopes from peers are
// in the Handler together: a neighbour's sightings all reach a Handler
// that stores nothing until 8 calls are in flight.
func TestValidatorRunsConcurrently(t *testing.T) {
	pub := startMeshNode(t, nil, newMemLog(), Options{})
	log := newMemLog()
	barrier := newBarrierHandler(log, 8, false)
	node := startMeshNode(t, nil, log, Options{Handler: barrier, HandlerTimeout: 3 * time.Second})
	connect(t, pub.h, node.h)
	warmMesh(t, []*meshNode{node}, pub)
	// Warm-up sightings published before the mesh formed are never
	// delivered: count only what comes after.
	before := log.count(pub.id())
	barrier.armed.Store(true)
	const n = 8
	for range n {
		pub.publish(t, "198.51.100.77")
	}
	waitFor(t, 20*time.Second, "the sightings to be stored or dropped", func() bool {
		return log.count(pub.id()) == before+n || len(node.g.Rejected()) > 0
	})
	select {
	case <-barrier.open:
	default:
		t.Fatalf("no 8 envelopes were in the Handler at once; rejections %v", node.g.Rejected())
	}
	if got := log.count(pub.id()) - before; got != n {
		t.Fatalf("stored %d of %d; rejections %v", got, n, node.g.Rejected())
	}
}
