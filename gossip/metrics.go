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
	ReasonSelfOrigin, ReasonUndeliverable,
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
// our topic is dropped uncounted. Our validator's own verdicts arrive here
// as "validation failed/ignored" and are already counted.
type tracer struct {
	topic string
	m     *metrics
}

var _ pubsub.RawTracer = (*tracer)(nil)

func (t *tracer) RejectMessage(msg *pubsub.Message, reason string) {
	if msg.GetTopic() != t.topic {
		return
	}
	switch reason {
	case pubsub.RejectMissingSignature, pubsub.RejectInvalidSignature,
		pubsub.RejectUnexpectedSignature, pubsub.RejectUnexpectedAuthInfo:
		t.m.reject(ReasonPubsubSignature)
	case pubsub.RejectValidationQueueFull:
		t.m.reject(ReasonQueueFull)
	case pubsub.RejectValidationThrottled:
		t.m.reject(ReasonThrottled)
	case pubsub.RejectBlacklstedPeer, pubsub.RejectBlacklistedSource:
		t.m.reject(ReasonBlacklisted)
	case pubsub.RejectSelfOrigin:
		t.m.reject(ReasonSelfOrigin)
	}
}

func (t *tracer) UndeliverableMessage(msg *pubsub.Message) {
	if msg.GetTopic() == t.topic {
		t.m.reject(ReasonUndeliverable)
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
func (*tracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
