package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

// Defaults for Options.
const (
	DefaultTopic          = "/meshward/sightings/1"
	DefaultMaxClockSkew   = 10 * time.Minute
	DefaultHandlerTimeout = 10 * time.Second
	DefaultReplayCapacity = 1 << 18
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("gossip closed")

// Handler receives every envelope that passed validation, before it is
// forwarded to other peers: it is called from inside the GossipSub validator.
// It must persist the envelope before returning nil; an error makes the
// message Ignored, so it is neither delivered nor forwarded. from is the
// neighbour that delivered the message (the node itself for its own
// publishes: the handler sees those too, so it must treat an envelope it
// already holds as success). It is called concurrently and must honour ctx.
type Handler interface {
	HandleEnvelope(ctx context.Context, env *intel.Envelope, from peer.ID) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, env *intel.Envelope, from peer.ID) error

// HandleEnvelope calls f.
func (f HandlerFunc) HandleEnvelope(ctx context.Context, env *intel.Envelope, from peer.ID) error {
	return f(ctx, env, from)
}

// Roster tells whether a node may speak. It is consulted for every message,
// so it must be cheap and safe for concurrent use.
type Roster interface {
	IsMember(nodeID string) bool
}

// Options configures New.
type Options struct {
	// Handler persists accepted envelopes. Required.
	Handler Handler
	// Roster, when set, rejects envelopes whose signer is not a member.
	// Nil accepts every validly signed envelope.
	Roster Roster
	// Registerer receives the package's metrics; nil keeps them unexported
	// (Rejected still reports them).
	Registerer prometheus.Registerer
	// Logger gets rejections at debug level; nil discards.
	Logger *slog.Logger
	// Topic is the GossipSub topic; "" means DefaultTopic.
	Topic string
	// MaxClockSkew is how far an envelope's timestamp may be from the local
	// clock before it is Ignored as stale; 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// HandlerTimeout bounds one validation, Handler included; 0 means
	// DefaultHandlerTimeout.
	HandlerTimeout time.Duration
	// AcceptKinds lists the envelope kinds allowed on the topic; nil means
	// sightings only.
	AcceptKinds []intel.Kind
	// ReplayCapacity bounds the (origin, seq) pairs remembered to catch
	// replays; 0 means DefaultReplayCapacity.
	ReplayCapacity int
}

func (o *Options) setDefaults() error {
	if o.Handler == nil {
		return errors.New("gossip: Options.Handler is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.MaxClockSkew < 0 {
		return fmt.Errorf("gossip: Options.MaxClockSkew %s is negative", o.MaxClockSkew)
	}
	if o.HandlerTimeout == 0 {
		o.HandlerTimeout = DefaultHandlerTimeout
	}
	if o.HandlerTimeout < 0 {
		return fmt.Errorf("gossip: Options.HandlerTimeout %s is negative", o.HandlerTimeout)
	}
	if o.AcceptKinds == nil {
		o.AcceptKinds = []intel.Kind{intel.KindSighting}
	}
	if o.ReplayCapacity == 0 {
		o.ReplayCapacity = DefaultReplayCapacity
	}
	if o.ReplayCapacity < 0 {
		return fmt.Errorf("gossip: Options.ReplayCapacity %d is negative", o.ReplayCapacity)
	}
	return nil
}

// Gossip is one node's membership in the sightings topic.
type Gossip struct {
	h      host.Host
	opts   Options
	ps     *pubsub.PubSub
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	m      *metrics
	replay *replayCache
	now    func() time.Time

	cancel context.CancelFunc
	loop   sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// New starts GossipSub on h (flood publishing on, strict signing), registers
// the envelope validator, joins the topic and subscribes, so the node is in
// the mesh. A host carries one Gossip: GossipSub owns the host's pubsub
// protocols. Close stops it; ctx ending stops it too.
func New(ctx context.Context, h host.Host, opts Options) (*Gossip, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, opts.Topic)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	g := &Gossip{
		h:      h,
		opts:   opts,
		m:      m,
		replay: newReplayCache(opts.ReplayCapacity),
		now:    time.Now,
		cancel: cancel,
	}
	fail := func(what string, err error) (*Gossip, error) {
		cancel()
		return nil, fmt.Errorf("gossip: %s: %w", what, err)
	}
	g.ps, err = pubsub.NewGossipSub(ctx, h,
		pubsub.WithFloodPublish(true),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithRawTracer(&tracer{topic: opts.Topic, m: m}),
	)
	if err != nil {
		return fail("start gossipsub", err)
	}
	if err := g.ps.RegisterTopicValidator(opts.Topic, g.validate, pubsub.WithValidatorTimeout(opts.HandlerTimeout)); err != nil {
		return fail("register validator", err)
	}
	if g.topic, err = g.ps.Join(opts.Topic); err != nil {
		return fail("join "+opts.Topic, err)
	}
	if g.sub, err = g.topic.Subscribe(); err != nil {
		return fail("subscribe "+opts.Topic, err)
	}
	g.loop.Add(1)
	go g.drain(ctx)
	return g, nil
}

// drain keeps the subscription read. Messages were handled by the validator
// already; the subscription exists so that the node is in the mesh.
func (g *Gossip) drain(ctx context.Context) {
	defer g.loop.Done()
	for {
		if _, err := g.sub.Next(ctx); err != nil {
			return
		}
	}
}

// Publish sends raw, an intel.Seal output, verbatim. The local validator
// runs first, so an envelope this node would reject is not sent and the
// error says why (the reason is also counted).
func (g *Gossip) Publish(ctx context.Context, raw []byte) error {
	if !g.enter() {
		return ErrClosed
	}
	defer g.inflight.Done()
	if err := g.topic.Publish(ctx, raw); err != nil {
		return fmt.Errorf("publish on %s: %w", g.opts.Topic, err)
	}
	return nil
}

// Rejected returns the count of dropped messages by reason (see the
// Reason constants); reasons never seen are absent.
func (g *Gossip) Rejected() map[string]uint64 { return g.m.snapshot() }

// Accepted returns how many envelopes passed validation and were handled.
func (g *Gossip) Accepted() uint64 { return g.m.acceptedN.Load() }

// Peers returns the peers known to be in the topic.
func (g *Gossip) Peers() []peer.ID { return g.topic.ListPeers() }

// Topic returns the topic name.
func (g *Gossip) Topic() string { return g.opts.Topic }

// Close stops the subscription and GossipSub, and waits until no Publish
// or Handler call is running. It is idempotent. It does not close the host.
func (g *Gossip) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	g.sub.Cancel()
	g.cancel()
	g.loop.Wait()
	g.inflight.Wait()
	return nil
}

func (g *Gossip) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.inflight.Add(1)
	return true
}

// validate is the topic validator. src is the neighbour that delivered the
// message; msg.GetFrom() is its signed GossipSub author.
func (g *Gossip) validate(ctx context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if !g.enter() {
		return g.drop(pubsub.ValidationIgnore, ReasonShuttingDown, src, msg.GetFrom(), nil)
	}
	defer g.inflight.Done()
	author := msg.GetFrom()

	env, err := intel.Open(msg.GetData())
	if err != nil {
		return g.drop(pubsub.ValidationReject, openReason(err), src, author, err)
	}
	if !isAuthor(author, env.Origin) {
		return g.drop(pubsub.ValidationReject, ReasonAuthorMismatch, src, author,
			fmt.Errorf("envelope signed by %s", env.OriginID()))
	}
	if g.opts.Roster != nil && !g.opts.Roster.IsMember(author.String()) {
		return g.drop(pubsub.ValidationReject, ReasonNotMember, src, author, nil)
	}
	now := g.now()
	if skew := now.Sub(env.Time); skew > g.opts.MaxClockSkew || skew < -g.opts.MaxClockSkew {
		return g.drop(pubsub.ValidationIgnore, ReasonStale, src, author,
			fmt.Errorf("timestamp %s is %s from local clock", env.Time.Format(time.RFC3339Nano), skew.Round(time.Millisecond)))
	}
	if !slices.Contains(g.opts.AcceptKinds, env.Kind) {
		return g.drop(pubsub.ValidationReject, ReasonUnexpectedKind, src, author, fmt.Errorf("kind %s", env.Kind))
	}
	if env.Kind == intel.KindSighting {
		if _, err := intel.DecodeSighting(env); err != nil {
			return g.drop(pubsub.ValidationReject, ReasonMalformed, src, author, err)
		}
	}
	key := replayKey(env.Origin, env.Seq)
	if !g.replay.reserve(key, env.Time.Add(g.opts.MaxClockSkew), now) {
		return g.drop(pubsub.ValidationIgnore, ReasonReplay, src, author, fmt.Errorf("seq %d seen before", env.Seq))
	}
	if err := g.opts.Handler.HandleEnvelope(ctx, env, src); err != nil {
		g.replay.release(key)
		return g.drop(pubsub.ValidationIgnore, ReasonHandlerError, src, author, err)
	}
	g.m.accept()
	return pubsub.ValidationAccept
}

func (g *Gossip) drop(res pubsub.ValidationResult, reason string, src, author peer.ID, err error) pubsub.ValidationResult {
	g.m.reject(reason)
	verdict := "reject"
	if res == pubsub.ValidationIgnore {
		verdict = "ignore"
	}
	g.opts.Logger.Debug("gossip message dropped",
		"topic", g.opts.Topic, "reason", reason, "verdict", verdict, "author", author, "via", src, "err", err)
	return res
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
	default:
		return ReasonMalformed
	}
}
