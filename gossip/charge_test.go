package gossip

import (
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// TestQueueDropsChargeTheSender: a message GossipSub drops before our
// validator sees it (validation queue full, throttled) still counts
// against the rate of the peer that sent it, so a flood that overwhelms
// the queue lowers its sender's score as one the rate limiter refuses
// would; other drops charge nothing.
func TestQueueDropsChargeTheSender(t *testing.T) {
	lim := newPeerLimiter(rate.Limit(1e-9), 1, 16)
	topic := "t"
	spec := &topicSpec{label: topic, m: must(newMetrics(nil, topic))}
	tr := newTracer(spec)
	flooder, other := peer.ID("flooder"), peer.ID("other")
	tr.charge = func(from peer.ID) { lim.allow(from, time.Now()) }
	msg := func(from peer.ID) *pubsub.Message {
		return &pubsub.Message{Message: &pb.Message{Topic: &topic}, ReceivedFrom: from}
	}
	for range 5 {
		tr.RejectMessage(msg(flooder), pubsub.RejectValidationQueueFull)
		tr.RejectMessage(msg(flooder), pubsub.RejectValidationThrottled)
	}
	tr.RejectMessage(msg(other), pubsub.RejectInvalidSignature) // scored by GossipSub itself
	if s := lim.score(flooder); s >= 0 {
		t.Errorf("flooder's score %v after 10 dropped messages over its rate, want negative", s)
	}
	if s := lim.score(other); s != 0 {
		t.Errorf("a peer whose message failed GossipSub's own check was charged: score %v", s)
	}
	if got := spec.m.snapshot(); got[ReasonQueueFull] != 5 || got[ReasonThrottled] != 5 || got[ReasonPubsubSignature] != 1 {
		t.Errorf("counted %v", got)
	}
}
