package gossip

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// The certified topic: the servers publish the committed log's entries
// and their certificates on it, and edges (members that are no raft
// peers) apply what a majority of the voters certifies (package
// consensus/certify). Its messages are not envelopes: they are checked by
// the consensus side (the Handler), after the topic's own checks: the
// author is a roster member, the size is bounded. Every refusal is
// counted by reason (CertifiedRefused,
// meshward_gossip_certified_refused_total).

// DefaultCertifiedTopic is the certified topic's name.
const DefaultCertifiedTopic = "/meshward/certified/1"

// DefaultMaxCertifiedSize bounds a certified message: GossipSub's own
// limit (1 MiB) less its framing.
const DefaultMaxCertifiedSize = 1<<20 - 4<<10

// CertifiedOptions configures the certified topic.
type CertifiedOptions struct {
	// Handler checks and takes one message (consensus.HandleCertified).
	// A refusal's error may say why (Reason() string) and whether the
	// message is to be ignored rather than rejected (Ignore() bool).
	// Required.
	Handler func(ctx context.Context, from peer.ID, data []byte) error
	// Topic; "" means DefaultCertifiedTopic.
	Topic string
	// MaxSize bounds a message; 0 means DefaultMaxCertifiedSize.
	MaxSize int
	// Metric names the refusal counter; "" means
	// meshward_gossip_certified_refused_total.
	Metric string
	// Unsubscribed joins the topic without subscribing (a node may
	// publish, and receives nothing until SetSubscribed(true)).
	Unsubscribed bool
}

// Certified is this node's membership in the certified topic.
type Certified struct {
	g     *Gossip
	opts  CertifiedOptions
	topic *pubsub.Topic

	mu       sync.Mutex
	refused  map[string]uint64
	accepted uint64
	metric   *prometheus.CounterVec // nil without a Registerer
	sub      *pubsub.Subscription   // nil while unsubscribed
}

// Reasons the certified topic refuses a message before its Handler runs.
const (
	ReasonCertifiedRefused = "refused" // the Handler refused it without a reason
)

// JoinCertified registers the certified topic's validator, joins the
// topic and subscribes. The topic lives until Close.
func (g *Gossip) JoinCertified(o CertifiedOptions) (*Certified, error) {
	if o.Handler == nil {
		return nil, errors.New("gossip: certified topic: Handler is required")
	}
	if o.Topic == "" {
		o.Topic = DefaultCertifiedTopic
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxCertifiedSize
	}
	c := &Certified{g: g, opts: o, refused: map[string]uint64{}}
	help := "Messages of the topic " + o.Topic + " refused, by reason."
	if o.Metric == "" {
		o.Metric, help = "meshward_gossip_certified_refused_total", "Messages of the certified topic refused, by reason."
	}
	if g.opts.Registerer != nil {
		c.metric = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: o.Metric,
			Help: help,
		}, []string{"reason"})
		if err := g.opts.Registerer.Register(c.metric); err != nil {
			return nil, fmt.Errorf("gossip: certified topic metrics: %w", err)
		}
	}
	if err := g.ps.RegisterTopicValidator(o.Topic, c.validate,
		pubsub.WithValidatorTimeout(g.opts.HandlerTimeout),
		pubsub.WithValidatorConcurrency(ValidatorConcurrency),
		pubsub.WithValidatorInline(false)); err != nil {
		return nil, fmt.Errorf("gossip: register validator of %s: %w", o.Topic, err)
	}
	t, err := g.ps.Join(o.Topic)
	if err != nil {
		return nil, fmt.Errorf("gossip: join %s: %w", o.Topic, err)
	}
	c.topic = t
	if !o.Unsubscribed {
		if err := c.SetSubscribed(true); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// SetSubscribed subscribes to the topic (on) or cancels the
// subscription: a node not subscribed is in no mesh of the topic and
// receives none of its messages, and may still publish. Idempotent.
func (c *Certified) SetSubscribed(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on == (c.sub != nil) {
		return nil
	}
	if !on {
		c.sub.Cancel()
		c.sub = nil
		return nil
	}
	sub, err := c.topic.Subscribe()
	if err != nil {
		return fmt.Errorf("gossip: subscribe %s: %w", c.opts.Topic, err)
	}
	if !c.g.routines.Go(func(ctx context.Context) {
		defer sub.Cancel()
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
		}
	}) {
		sub.Cancel()
		return ErrClosed
	}
	c.sub = sub
	return nil
}

// Subscribed reports whether the node is subscribed to the topic.
func (c *Certified) Subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sub != nil
}

// validate is the topic's validator.
func (c *Certified) validate(ctx context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	g := c.g
	if !g.enter() {
		return c.drop(ReasonShuttingDown, true)
	}
	defer g.inflight.Done()
	author := msg.GetFrom()
	if !g.member(author) || !g.member(src) {
		return c.drop(ReasonNotMember, false)
	}
	data := msg.GetData()
	if len(data) > c.opts.MaxSize {
		return c.drop(ReasonOversized, false)
	}
	if err := c.opts.Handler(ctx, author, data); err != nil {
		reason, ignore := ReasonCertifiedRefused, false
		var r interface{ Reason() string }
		if errors.As(err, &r) && r.Reason() != "" {
			reason = r.Reason()
		}
		var i interface{ Ignore() bool }
		if errors.As(err, &i) {
			ignore = i.Ignore()
		}
		g.opts.Logger.Debug("certified message dropped", "reason", reason, "author", author, "via", src, "err", err)
		return c.drop(reason, ignore)
	}
	c.mu.Lock()
	c.accepted++
	c.mu.Unlock()
	return pubsub.ValidationAccept
}

func (c *Certified) drop(reason string, ignore bool) pubsub.ValidationResult {
	c.mu.Lock()
	c.refused[reason]++
	c.mu.Unlock()
	if c.metric != nil {
		c.metric.WithLabelValues(reason).Inc()
	}
	if ignore {
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationReject
}

// PublishCertified publishes one message (a certify.Message's encoding).
// The local validator runs first.
func (c *Certified) PublishCertified(ctx context.Context, data []byte) error {
	if !c.g.enter() {
		return ErrClosed
	}
	defer c.g.inflight.Done()
	if err := c.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("publish on %s: %w", c.opts.Topic, err)
	}
	return nil
}

// Refused returns the refusals so far, by reason.
func (c *Certified) Refused() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.refused)
}

// Accepted is how many messages passed.
func (c *Certified) Accepted() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted
}

// Peers are the peers known to be in the topic.
func (c *Certified) Peers() []peer.ID { return c.topic.ListPeers() }
