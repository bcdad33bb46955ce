package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// Admission: every envelope that reaches this node, on any GossipSub topic
// or through anti-entropy, passes the one pipeline below, in this order:
//
//	shutting_down  the node is closing
//	rate_limited   the forwarding peer is over its rate (GossipSub only)
//	open           size, format, version, signature (intel.Open)
//	author         the GossipSub author signed the envelope (GossipSub only)
//	roster         the signer is a member
//	freshness      the timestamp, judged by the topic's freshness mode
//	kind           the topic allows the envelope's kind
//	payload        the payload decodes and validates as its kind requires
//	keep           the topic's last stage: replay check, then hand on
//
// What differs between topics is data, a topicSpec; what a rejection costs
// the sender is one table, verdicts.

// freshness says how an envelope's timestamp is judged.
type freshness int

const (
	// freshWindow admits timestamps within MaxClockSkew of the local clock
	// either way: live gossip.
	freshWindow freshness = iota
	// freshNotAhead admits any age but not more than MaxClockSkew ahead:
	// anti-entropy, where old envelopes are the point.
	freshNotAhead
)

// check returns an error when ts is not fresh at now.
func (f freshness) check(ts, now time.Time, skew time.Duration) error {
	switch f {
	case freshNotAhead:
		if ahead := ts.Sub(now); ahead > skew {
			return fmt.Errorf("timestamp %s is %s ahead of the local clock", ts.Format(time.RFC3339Nano), ahead.Round(time.Millisecond))
		}
	default:
		if d := now.Sub(ts); d > skew || d < -skew {
			return fmt.Errorf("timestamp %s is %s from local clock", ts.Format(time.RFC3339Nano), d.Round(time.Millisecond))
		}
	}
	return nil
}

// replayUntil is how long the replay cache remembers an envelope stamped
// ts and admitted at now: until a copy would be refused as stale anyway,
// or, where age is no bar, for MaxClockSkew from now.
func (f freshness) replayUntil(ts, now time.Time, skew time.Duration) time.Time {
	if f == freshNotAhead {
		return now.Add(skew)
	}
	return ts.Add(skew)
}

// topicSpec is what differs between the topics (and anti-entropy) on which
// envelopes are admitted.
type topicSpec struct {
	// label is the topic label of the counters and the log.
	label string
	m     *metrics
	// gossiped marks GossipSub topics: the forwarding peer is rate
	// limited and the message's signed author must be the envelope's
	// origin. Anti-entropy has neither.
	gossiped bool
	// kinds tells which envelope kinds the topic carries.
	kinds func(intel.Kind) bool
	fresh freshness
	// maxAge, when positive, refuses as stale what is older (anti-entropy:
	// the store's retention).
	maxAge time.Duration
	// keep is the last stage: it refuses a replay (ReasonReplay) or takes
	// the envelope, returning "" (or ReasonHandlerError and the error).
	keep func(ctx context.Context, a *admission) (reason string, err error)
}

// admission is an envelope that passed every stage before keep.
type admission struct {
	env     *intel.Envelope
	origin  string // env.OriginID()
	payload any    // as decoded by the kind's payload check
	from    peer.ID
	now     time.Time
	expires time.Time // until when a copy is a replay
}

// verdicts is what each reason our pipeline decides costs the sender:
// Reject (scored against the forwarding peer, for what an honest peer never
// sends) or Ignore (dropped without penalty: load, clocks, races).
var verdicts = map[string]pubsub.ValidationResult{
	ReasonShuttingDown:   pubsub.ValidationIgnore,
	ReasonRateLimited:    pubsub.ValidationIgnore,
	ReasonOversized:      pubsub.ValidationReject,
	ReasonMalformed:      pubsub.ValidationReject,
	ReasonUnknownVersion: pubsub.ValidationReject,
	ReasonBadSignature:   pubsub.ValidationReject,
	ReasonAuthorMismatch: pubsub.ValidationReject,
	ReasonNotMember:      pubsub.ValidationReject,
	ReasonStale:          pubsub.ValidationIgnore,
	ReasonUnexpectedKind: pubsub.ValidationReject,
	ReasonReplay:         pubsub.ValidationIgnore,
	ReasonHandlerError:   pubsub.ValidationIgnore,
	ReasonFromFuture:     pubsub.ValidationReject,
}

// admit runs the pipeline on raw for spec. src is the neighbour that
// delivered it; author is the GossipSub author (empty for anti-entropy).
// Every outcome is counted: accepted, or rejected under its reason.
func (g *Gossip) admit(ctx context.Context, spec *topicSpec, raw []byte, src, author peer.ID) pubsub.ValidationResult {
	reason, err := g.check(ctx, spec, raw, src, author)
	if reason == "" {
		spec.m.accept()
		return pubsub.ValidationAccept
	}
	return g.dropped(spec, reason, src, author, err)
}

func (g *Gossip) check(ctx context.Context, spec *topicSpec, raw []byte, src, author peer.ID) (string, error) {
	if !g.enter() {
		return ReasonShuttingDown, nil
	}
	defer g.inflight.Done()
	now := g.now()
	if spec.gossiped && src != g.h.ID() && g.limiter != nil && !g.limiter.allow(src, now) {
		return ReasonRateLimited, nil
	}
	// Through the node's verify cache: an envelope verified here costs
	// nothing when the FSM checks it again as a proof.
	env, err := g.opts.Verify.Open(raw)
	if err != nil {
		return openReason(err), err
	}
	if spec.gossiped && !isAuthor(author, env.Origin) {
		return ReasonAuthorMismatch, fmt.Errorf("envelope signed by %s", env.OriginID())
	}
	origin := env.OriginID()
	if g.opts.Roster != nil && !g.opts.Roster.IsMember(origin) {
		return ReasonNotMember, nil
	}
	if err := spec.fresh.check(env.Time, now, g.opts.MaxClockSkew); err != nil {
		return ReasonStale, err
	}
	if age := now.Sub(env.Time); spec.maxAge > 0 && age > spec.maxAge {
		return ReasonStale, fmt.Errorf("timestamp %s is %s old, beyond the retention of %s", env.Time.Format(time.RFC3339Nano), age.Round(time.Second), spec.maxAge)
	}
	if !spec.kinds(env.Kind) {
		return ReasonUnexpectedKind, fmt.Errorf("kind %s", env.Kind)
	}
	payload, err := checkPayload(env)
	if err != nil {
		return openReason(err), err
	}
	return spec.keep(ctx, &admission{
		env:     env,
		origin:  origin,
		payload: payload,
		from:    src,
		now:     now,
		expires: spec.fresh.replayUntil(env.Time, now, g.opts.MaxClockSkew),
	})
}

// dropped counts and logs a drop and returns its verdict.
func (g *Gossip) dropped(spec *topicSpec, reason string, src, author peer.ID, err error) pubsub.ValidationResult {
	spec.m.reject(reason)
	res, ok := verdicts[reason]
	if !ok {
		res = pubsub.ValidationIgnore
	}
	verdict := "reject"
	if res == pubsub.ValidationIgnore {
		verdict = "ignore"
	}
	g.opts.Logger.Debug("gossip message dropped",
		"topic", spec.label, "reason", reason, "verdict", verdict, "author", author, "via", src, "err", err)
	return res
}

// validator adapts spec to a GossipSub topic validator. src is the
// neighbour that delivered the message; msg.GetFrom() is its signed author.
func (g *Gossip) validator(spec *topicSpec) func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
	return func(ctx context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		return g.admit(ctx, spec, msg.GetData(), src, msg.GetFrom())
	}
}

// handOn is the keep stage of the topics whose envelopes reach the Handler:
// a replay (of an envelope anti-entropy knows is held, when held is set, or
// of one in the replay cache) is refused; otherwise the Handler persists
// the envelope, and a failure lets a later copy in again.
func (g *Gossip) handOn(held bool) func(context.Context, *admission) (string, error) {
	return func(ctx context.Context, a *admission) (string, error) {
		env := a.env
		if held && g.have != nil && g.have.contains(a.origin, env.Seq) {
			return ReasonReplay, fmt.Errorf("seq %d held", env.Seq)
		}
		key := replayKey(env.Origin, env.Seq)
		if !g.replay.reserve(key, a.expires, a.now) {
			return ReasonReplay, fmt.Errorf("seq %d seen before", env.Seq)
		}
		err := g.handle(ctx, env, a.from)
		if err != nil {
			g.replay.release(key)
			return ReasonHandlerError, err
		}
		if g.have != nil {
			g.have.add(a.origin, env.Seq)
		}
		return "", nil
	}
}

// handle calls the Handler within HandlerTimeout. A GossipSub validator's
// ctx already ends by then (the topic's validator timeout is
// HandlerTimeout), so it is passed as it is, saving a timer per envelope.
func (g *Gossip) handle(ctx context.Context, env *intel.Envelope, from peer.ID) error {
	if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now().Add(g.opts.HandlerTimeout)) {
		return g.opts.Handler.HandleEnvelope(ctx, env, from)
	}
	hctx, cancel := context.WithTimeout(ctx, g.opts.HandlerTimeout)
	defer cancel()
	return g.opts.Handler.HandleEnvelope(hctx, env, from)
}

// checkPayload decodes env's payload as its kind requires before it is
// handed on: sightings, indicator reports and heartbeats must decode (and
// the first two validate), and reports and heartbeats must fit their
// bounds. Other kinds pass as they are. Errors wrap intel.ErrOversized or
// intel.ErrMalformed (see openReason).
func checkPayload(env *intel.Envelope) (any, error) {
	switch env.Kind {
	case intel.KindSighting:
		return intel.DecodeSightingAt(env, intel.SightingSkew)
	case intel.KindIndicator:
		if len(env.Payload) > MaxIndicatorPayload {
			return nil, fmt.Errorf("%w: indicator report of %d bytes, limit %d", intel.ErrOversized, len(env.Payload), MaxIndicatorPayload)
		}
		return intel.DecodeIndicatorReport(env)
	case intel.KindHeartbeat:
		if len(env.Payload) > MaxHeartbeatPayload {
			return nil, fmt.Errorf("%w: heartbeat of %d bytes, limit %d", intel.ErrOversized, len(env.Payload), MaxHeartbeatPayload)
		}
		var beat Heartbeat
		if err := json.Unmarshal(env.Payload, &beat); err != nil {
			return nil, fmt.Errorf("%w: heartbeat: %w", intel.ErrMalformed, err)
		}
		return beat, nil
	}
	return nil, nil
}

// kindsOf returns a kinds predicate for a fixed list.
func kindsOf(kinds ...intel.Kind) func(intel.Kind) bool {
	return func(k intel.Kind) bool { return slices.Contains(kinds, k) }
}

// ed25519PeerIDPrefix is the identity multihash header of a libp2p peer ID
// that embeds an ed25519 public key (see intel.NodeID).
var ed25519PeerIDPrefix = []byte{0x00, 36, 0x08, 0x01, 0x12, 32}

// isAuthor reports whether the peer ID is the one of the ed25519 key pub;
// it is intel.NodeID(pub) == author.String() without the base58 round trip.
func isAuthor(author peer.ID, pub []byte) bool {
	b := []byte(author)
	return len(b) == len(ed25519PeerIDPrefix)+32 &&
		bytes.Equal(b[:len(ed25519PeerIDPrefix)], ed25519PeerIDPrefix) &&
		bytes.Equal(b[len(ed25519PeerIDPrefix):], pub)
}

func openReason(err error) string {
	switch {
	case errors.Is(err, intel.ErrOversized):
		return ReasonOversized
	case errors.Is(err, intel.ErrUnknownVersion):
		return ReasonUnknownVersion
	case errors.Is(err, intel.ErrBadSignature):
		return ReasonBadSignature
	case errors.Is(err, intel.ErrSightingFromFuture):
		return ReasonFromFuture
	default:
		return ReasonMalformed
	}
}
