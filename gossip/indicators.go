package gossip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// Indicator topic defaults and bounds.
const (
	DefaultIndicatorTopic = "/meshward/indicators/1"
	// MaxIndicatorPayload bounds an indicator report's JSON payload: a
	// report at every field's limit (intel.MaxReport*, a 2 KiB URL) fits
	// even with every character JSON-escaped.
	MaxIndicatorPayload = 32 << 10
)

// ErrIndicatorsOff is returned by PublishIndicator when the indicator topic
// is not joined (Options.Indicators is nil).
var ErrIndicatorsOff = errors.New("indicator topic off")

// IndicatorOptions configures the indicator topic, on which operators' and
// threat feeds' indicator reports (intel.KindIndicator envelopes) travel.
type IndicatorOptions struct {
	// Topic; "" means DefaultIndicatorTopic.
	Topic string
}

func (o *IndicatorOptions) setDefaults() {
	if o.Topic == "" {
		o.Topic = DefaultIndicatorTopic
	}
}

type indicators struct {
	opts  IndicatorOptions
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	m     *metrics
}

func newIndicators(reg prometheus.Registerer, opts IndicatorOptions) (*indicators, error) {
	opts.setDefaults()
	m, err := newMetrics(reg, opts.Topic)
	if err != nil {
		return nil, err
	}
	return &indicators{opts: opts, m: m}, nil
}

// tracer counts the drops GossipSub decides on its own on the topic.
func (ind *indicators) tracer() *tracer { return &tracer{topic: ind.opts.Topic, m: ind.m} }

// startIndicators registers the validator, joins the topic and keeps the
// subscription read; the subscription is cancelled when ctx ends.
func (g *Gossip) startIndicators(ctx context.Context) error {
	ind := g.ind
	if err := g.ps.RegisterTopicValidator(ind.opts.Topic, g.validateIndicator, pubsub.WithValidatorTimeout(g.opts.HandlerTimeout)); err != nil {
		return fmt.Errorf("register indicator validator: %w", err)
	}
	var err error
	if ind.topic, err = g.ps.Join(ind.opts.Topic); err != nil {
		return fmt.Errorf("join %s: %w", ind.opts.Topic, err)
	}
	if ind.sub, err = ind.topic.Subscribe(); err != nil {
		return fmt.Errorf("subscribe %s: %w", ind.opts.Topic, err)
	}
	g.loop.Add(1)
	go func() {
		defer g.loop.Done()
		defer ind.sub.Cancel()
		for {
			if _, err := ind.sub.Next(ctx); err != nil {
				return
			}
		}
	}()
	return nil
}

// PublishIndicator sends raw, an intel.KindIndicator envelope from
// intel.Seal, verbatim on the indicator topic. As with Publish, the local
// validator runs first (the Handler sees the envelope too), so a report
// this node would refuse is not sent and the error says why.
func (g *Gossip) PublishIndicator(ctx context.Context, raw []byte) error {
	if g.ind == nil {
		return ErrIndicatorsOff
	}
	if !g.enter() {
		return ErrClosed
	}
	defer g.inflight.Done()
	if err := g.ind.topic.Publish(ctx, raw); err != nil {
		return fmt.Errorf("publish on %s: %w", g.ind.opts.Topic, err)
	}
	return nil
}

// IndicatorRejected returns the indicator messages dropped, by reason; nil
// when the topic is off.
func (g *Gossip) IndicatorRejected() map[string]uint64 {
	if g.ind == nil {
		return nil
	}
	return g.ind.m.snapshot()
}

// IndicatorAccepted returns how many indicator envelopes passed validation
// and were handled.
func (g *Gossip) IndicatorAccepted() uint64 {
	if g.ind == nil {
		return 0
	}
	return g.ind.m.acceptedN.Load()
}

// IndicatorPeers returns the peers known to be in the indicator topic.
func (g *Gossip) IndicatorPeers() []peer.ID {
	if g.ind == nil {
		return nil
	}
	return g.ind.topic.ListPeers()
}

// validateIndicator is the indicator topic's validator: the sightings
// validator's checks (rate, signature, author, roster, freshness, kind,
// size, payload, replay), then the Handler.
func (g *Gossip) validateIndicator(ctx context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	ind := g.ind
	author := msg.GetFrom()
	drop := func(res pubsub.ValidationResult, reason string, err error) pubsub.ValidationResult {
		return g.dropOn(ind.m, ind.opts.Topic, res, reason, src, author, err)
	}
	if !g.enter() {
		return drop(pubsub.ValidationIgnore, ReasonShuttingDown, nil)
	}
	defer g.inflight.Done()
	now := g.now()
	if src != g.h.ID() && g.limiter != nil && !g.limiter.allow(src, now) {
		return drop(pubsub.ValidationIgnore, ReasonRateLimited, nil)
	}
	env, err := intel.Open(msg.GetData())
	if err != nil {
		return drop(pubsub.ValidationReject, openReason(err), err)
	}
	if !isAuthor(author, env.Origin) {
		return drop(pubsub.ValidationReject, ReasonAuthorMismatch, fmt.Errorf("envelope signed by %s", env.OriginID()))
	}
	if g.opts.Roster != nil && !g.opts.Roster.IsMember(author.String()) {
		return drop(pubsub.ValidationReject, ReasonNotMember, nil)
	}
	if skew := now.Sub(env.Time); skew > g.opts.MaxClockSkew || skew < -g.opts.MaxClockSkew {
		return drop(pubsub.ValidationIgnore, ReasonStale,
			fmt.Errorf("timestamp %s is %s from local clock", env.Time.Format(time.RFC3339Nano), skew.Round(time.Millisecond)))
	}
	if env.Kind != intel.KindIndicator {
		return drop(pubsub.ValidationReject, ReasonUnexpectedKind, fmt.Errorf("kind %s", env.Kind))
	}
	if err := checkPayload(env); err != nil {
		return drop(pubsub.ValidationReject, openReason(err), err)
	}
	key := replayKey(env.Origin, env.Seq)
	if !g.replay.reserve(key, env.Time.Add(g.opts.MaxClockSkew), now) {
		return drop(pubsub.ValidationIgnore, ReasonReplay, fmt.Errorf("seq %d seen before", env.Seq))
	}
	if err := g.opts.Handler.HandleEnvelope(ctx, env, src); err != nil {
		g.replay.release(key)
		return drop(pubsub.ValidationIgnore, ReasonHandlerError, err)
	}
	if g.have != nil {
		g.have.add(env.OriginID(), env.Seq)
	}
	ind.m.accept()
	return pubsub.ValidationAccept
}

// checkPayload decodes env's payload as its kind requires before it is
// handed on: sightings and indicator reports must decode and validate, and
// a report must fit MaxIndicatorPayload. Errors wrap intel.ErrOversized or
// intel.ErrMalformed (see openReason).
func checkPayload(env *intel.Envelope) error {
	switch env.Kind {
	case intel.KindSighting:
		_, err := intel.DecodeSighting(env)
		return err
	case intel.KindIndicator:
		if len(env.Payload) > MaxIndicatorPayload {
			return fmt.Errorf("%w: indicator report of %d bytes, limit %d", intel.ErrOversized, len(env.Payload), MaxIndicatorPayload)
		}
		_, err := intel.DecodeIndicatorReport(env)
		return err
	}
	return nil
}

// syncAccepts reports whether anti-entropy may hand on an envelope of kind:
// the sightings topic's kinds, and indicator reports when their topic is
// joined.
func (g *Gossip) syncAccepts(kind intel.Kind) bool {
	return slices.Contains(g.opts.AcceptKinds, kind) || (kind == intel.KindIndicator && g.ind != nil)
}
