package gossip

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is dropped, the values of the "reason" label of
// meshward_gossip_rejected_total and the keys of Gossip.Rejected.
const (
	// Decided by our validator.
	ReasonOversized      = "oversized"
	ReasonMalformed      = "malformed"
	ReasonUnknownVersion = "unknown_version"
	ReasonBadSignature   = "bad_signature"
	ReasonAuthorMismatch = "author_mismatch"
	ReasonNotMember      = "not_member"
	ReasonStale          = "stale"
	ReasonUnexpectedKind = "unexpected_kind"
	ReasonReplay         = "replay"
	ReasonHandlerError   = "handler_error"
	ReasonShuttingDown   = "shutting_down"
	ReasonRateLimited    = "rate_limited"
	// ReasonFromFuture: a sighting claims to have been seen after the
	// envelope carrying it was signed (beyond intel.SightingSkew).
	ReasonFromFuture = "from_future"
	// Decided by GossipSub before or around our validator.
	ReasonPubsubSignature = "pubsub_signature" // missing or invalid message signature
	ReasonQueueFull       = "queue_full"       // validation queue full
	ReasonThrottled       = "throttled"        // too many validations in flight
	ReasonBlacklisted     = "blacklisted"
	ReasonSelfOrigin      = "self_origin" // a message claiming our ID that we did not send
	ReasonUndeliverable   = "undeliverable"
)

var allReasons = []string{
	ReasonOversized, ReasonMalformed, ReasonUnknownVersion, ReasonBadSignature,
	ReasonAuthorMismatch, ReasonNotMember, ReasonStale, ReasonUnexpectedKind,
	ReasonReplay, ReasonHandlerError, ReasonShuttingDown, ReasonRateLimited,
	ReasonPubsubSignature, ReasonQueueFull, ReasonThrottled, ReasonBlacklisted,
	ReasonSelfOrigin, ReasonUndeliverable, ReasonFromFuture,
}

type metrics struct {
	rejected  map[string]prometheus.Counter // read-only after construction
	counts    map[string]*atomic.Uint64     // read-only after construction
	accepted  prometheus.Counter
	acceptedN atomic.Uint64
}

// newMetrics builds the counters for topic and registers them with reg when
// it is not nil. Two Gossip instances may share a registerer: the second
// reuses the first's vectors.
func newMetrics(reg prometheus.Registerer, topic string) (*metrics, error) {
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshward_gossip_rejected_total",
		Help: "Gossip messages dropped (rejected or ignored), by topic and reason.",
	}, []string{"topic", "reason"})
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshward_gossip_accepted_total",
		Help: "Gossip envelopes that passed validation and were handled, by topic.",
	}, []string{"topic"})
	if reg != nil {
		var err error
		if rejected, err = register(reg, rejected); err != nil {
			return nil, err
		}
		if accepted, err = register(reg, accepted); err != nil {
			return nil, err
		}
	}
	m := &metrics{
		rejected: make(map[string]prometheus.Counter, len(allReasons)),
		counts:   make(map[string]*atomic.Uint64, len(allReasons)),
		accepted: accepted.WithLabelValues(topic),
	}
	for _, r := range allReasons {
		m.rejected[r] = rejected.WithLabelValues(topic, r) // exported as 0 from the start
		m.counts[r] = new(atomic.Uint64)
	}
	return m, nil
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	return nil, fmt.Errorf("register metrics: %w", err)
}

func (m *metrics) reject(reason string) {
	c, ok := m.counts[reason]
	if !ok {
		panic("gossip: unknown rejection reason " + reason) // a programming error
	}
	c.Add(1)
	m.rejected[reason].Inc()
}

func (m *metrics) accept() {
	m.acceptedN.Add(1)
	m.accepted.Inc()
}

func (m *metrics) snapshot() map[string]uint64 {
	out := make(map[string]uint64)
	for r, c := range m.counts {
		if n := c.Load(); n > 0 {
			out[r] = n
		}
	}
	return out
}

// tracer counts the drops GossipSub decides on its own, so that nothing on
// our topics is dropped uncounted; each is counted under its topic's
// label. Our validators' own verdicts arrive here as "validation
// failed/ignored" and are already counted.
type tracer struct {
	topics map[string]*metrics // read-only after construction
	// charge, when set, counts a message GossipSub dropped before our
	// validator saw it (validation queue full, throttled) against the
	// rate of the peer that sent it: a flood that overwhelms the queue
	// must cost its sender as one the rate limiter refuses would.
	charge func(from peer.ID)
	// dropped counts the RPCs GossipSub dropped on their way out, a
	// peer's outbound queue being full (a slow or stalled peer); the
	// messages they carried reach it later by gossip (IHAVE, IWANT), if
	// at all. droppedMetric, when set, is its exported counter.
	dropped       atomic.Uint64
	droppedMetric prometheus.Counter
}

// newDroppedMetric is meshward_gossip_rpc_dropped_total, registered with
// reg (shared by the Gossip instances of a registerer).
func newDroppedMetric(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshward_gossip_rpc_dropped_total",
		Help: "GossipSub RPCs to a peer dropped because the peer's outbound queue was full (a slow or stalled peer); their messages reach it by gossip, if at all.",
	}, nil)
	c, err := register(reg, c)
	if err != nil {
		return nil, err
	}
	return c.WithLabelValues(), nil
}

var _ pubsub.RawTracer = (*tracer)(nil)

func newTracer(specs ...*topicSpec) *tracer {
	t := &tracer{topics: make(map[string]*metrics, len(specs))}
	for _, s := range specs {
		t.topics[s.label] = s.m
	}
	return t
}

// pubsubReasons maps the reasons GossipSub drops a message for to ours;
// reasons absent here are our validators' own verdicts.
var pubsubReasons = map[string]string{
	pubsub.RejectMissingSignature:    ReasonPubsubSignature,
	pubsub.RejectInvalidSignature:    ReasonPubsubSignature,
	pubsub.RejectUnexpectedSignature: ReasonPubsubSignature,
	pubsub.RejectUnexpectedAuthInfo:  ReasonPubsubSignature,
	pubsub.RejectValidationQueueFull: ReasonQueueFull,
	pubsub.RejectValidationThrottled: ReasonThrottled,
	pubsub.RejectBlacklstedPeer:      ReasonBlacklisted,
	pubsub.RejectBlacklistedSource:   ReasonBlacklisted,
	pubsub.RejectSelfOrigin:          ReasonSelfOrigin,
}

func (t *tracer) RejectMessage(msg *pubsub.Message, reason string) {
	m, ok := t.topics[msg.GetTopic()]
	if !ok {
		return
	}
	if r, ok := pubsubReasons[reason]; ok {
		m.reject(r)
		if t.charge != nil && (r == ReasonQueueFull || r == ReasonThrottled) {
			t.charge(msg.ReceivedFrom)
		}
	}
}

func (t *tracer) UndeliverableMessage(msg *pubsub.Message) {
	if m, ok := t.topics[msg.GetTopic()]; ok {
		m.reject(ReasonUndeliverable)
	}
}

func (*tracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (*tracer) OnClosedOutboundStream(peer.ID)                       {}
func (*tracer) Join(string)                                          {}
func (*tracer) Leave(string)                                         {}
func (*tracer) Graft(peer.ID, string)                                {}
func (*tracer) Prune(peer.ID, string)                                {}
func (*tracer) ValidateMessage(*pubsub.Message)                      {}
func (*tracer) DeliverMessage(*pubsub.Message)                       {}
func (*tracer) DuplicateMessage(*pubsub.Message)                     {}
func (*tracer) ThrottlePeer(peer.ID)                                 {}
func (*tracer) RecvRPC(*pubsub.RPC)                                  {}
func (*tracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}

func (t *tracer) DropRPC(*pubsub.RPC, peer.ID) {
	t.dropped.Add(1)
	if t.droppedMetric != nil {
		t.droppedMetric.Inc()
	}
}
