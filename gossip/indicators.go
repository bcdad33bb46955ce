package gossip

import (
	"context"
	"errors"
	"slices"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

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
	spec  *topicSpec
}

// PublishIndicator sends raw, an intel.KindIndicator envelope from
// intel.Seal, verbatim on the indicator topic. As with Publish, the local
// validator runs first (the Handler sees the envelope too), so a report
// this node would refuse is not sent and the error says why.
func (g *Gossip) PublishIndicator(ctx context.Context, raw []byte) error {
	if g.ind == nil {
		return ErrIndicatorsOff
	}
	return g.publish(ctx, g.ind.topic, g.ind.spec, raw)
}

// IndicatorRejected returns the indicator messages dropped, by reason; nil
// when the topic is off.
func (g *Gossip) IndicatorRejected() map[string]uint64 {
	if g.ind == nil {
		return nil
	}
	return g.ind.spec.m.snapshot()
}

// IndicatorAccepted returns how many indicator envelopes passed validation
// and were handled.
func (g *Gossip) IndicatorAccepted() uint64 {
	if g.ind == nil {
		return 0
	}
	return g.ind.spec.m.acceptedN.Load()
}

// IndicatorPeers returns the peers known to be in the indicator topic.
func (g *Gossip) IndicatorPeers() []peer.ID {
	if g.ind == nil {
		return nil
	}
	return g.ind.topic.ListPeers()
}

// syncAccepts reports whether anti-entropy may hand on an envelope of kind:
// the sightings topic's kinds, and indicator reports when their topic is
// joined.
func (g *Gossip) syncAccepts(kind intel.Kind) bool {
	return slices.Contains(g.opts.AcceptKinds, kind) || (kind == intel.KindIndicator && g.ind != nil)
}
