package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshward/meshward/intel"
)

// Defaults for Options.
const (
	DefaultTopic          = "/meshward/sightings/1"
	DefaultMaxClockSkew   = 10 * time.Minute
	DefaultHandlerTimeout = 10 * time.Second
	DefaultReplayCapacity = 1 << 18
	// DefaultRateLimit and DefaultRateBurst shape the token bucket each
	// forwarding peer gets: generous, since an honest hub relays the
	// sightings of every node.
	DefaultRateLimit          = rate.Limit(200)
	DefaultRateBurst          = 2000
	DefaultMaxRateBuckets     = 4096
	DefaultScoreInspectPeriod = 10 * time.Second
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

	// Log, when set, turns on anti-entropy (SyncProtocol): sessions with
	// every peer that connects and with a random peer every SyncInterval.
	// Nil disables it.
	Log Log
	// SyncInterval is the mean time between periodic anti-entropy sessions;
	// 0 means DefaultSyncInterval.
	SyncInterval time.Duration
	// SyncMaxSession bounds the envelopes one session carries; 0 means
	// DefaultSyncMaxSession.
	SyncMaxSession int
	// SyncTimeout bounds one session; 0 means DefaultSyncTimeout.
	SyncTimeout time.Duration

	// RateLimit is the messages per second each forwarding peer may have
	// validated across the gossip topics, with bursts of RateBurst; excess
	// messages are Ignored (counted "rate_limited") and lower the peer's
	// score. 0 means DefaultRateLimit and DefaultRateBurst; rate.Inf
	// disables the limit.
	RateLimit rate.Limit
	RateBurst int
	// MaxRateBuckets bounds the peers tracked by the rate limiter; 0 means
	// DefaultMaxRateBuckets.
	MaxRateBuckets int
	// ScoreInspectPeriod is how often PeerScores is refreshed; 0 means
	// DefaultScoreInspectPeriod.
	ScoreInspectPeriod time.Duration

	// Heartbeats, when set, joins the heartbeat topic; nil leaves it off.
	Heartbeats *HeartbeatOptions
	// Indicators, when set, joins the indicator topic, whose envelopes
	// reach the Handler (and anti-entropy) like sightings; nil leaves it
	// off.
	Indicators *IndicatorOptions
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
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.SyncMaxSession == 0 {
		o.SyncMaxSession = DefaultSyncMaxSession
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	if o.SyncInterval < 0 || o.SyncMaxSession < 0 || o.SyncTimeout < 0 {
		return fmt.Errorf("gossip: anti-entropy interval %s, session limit %d and timeout %s must not be negative",
			o.SyncInterval, o.SyncMaxSession, o.SyncTimeout)
	}
	if o.RateLimit == 0 {
		o.RateLimit, o.RateBurst = DefaultRateLimit, max(o.RateBurst, DefaultRateBurst)
	}
	if o.RateBurst == 0 {
		o.RateBurst = max(1, int(min(o.RateLimit, 1<<20)))
	}
	if o.MaxRateBuckets == 0 {
		o.MaxRateBuckets = DefaultMaxRateBuckets
	}
	if o.RateLimit < 0 || o.RateBurst < 0 || o.MaxRateBuckets < 0 {
		return fmt.Errorf("gossip: rate limit %v, burst %d and buckets %d must not be negative", o.RateLimit, o.RateBurst, o.MaxRateBuckets)
	}
	if o.ScoreInspectPeriod == 0 {
		o.ScoreInspectPeriod = DefaultScoreInspectPeriod
	}
	if o.ScoreInspectPeriod < 0 {
		return fmt.Errorf("gossip: Options.ScoreInspectPeriod %s is negative", o.ScoreInspectPeriod)
	}
	if o.Heartbeats != nil {
		hb := *o.Heartbeats
		if err := hb.setDefaults(); err != nil {
			return err
		}
		o.Heartbeats = &hb
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

	limiter *peerLimiter // nil when the rate is unlimited
	syncM   *metrics     // anti-entropy rejections
	sync    *syncer      // nil when Options.Log is nil
	hb      *heartbeats  // nil when Options.Heartbeats is nil
	ind     *indicators  // nil when Options.Indicators is nil
	have    *holdings    // nil when anti-entropy is off
	scoreMu sync.Mutex
	scores  map[peer.ID]float64

	cancel context.CancelFunc
	loop   sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// New starts GossipSub on h (flood publishing on, strict signing, peer
// scoring), registers the envelope validator, joins the topic and
// subscribes, so the node is in the mesh; with Options.Heartbeats it does
// the same for the heartbeat topic, and with Options.Log it serves and runs
// anti-entropy. A host carries one Gossip: GossipSub owns the host's pubsub
// protocols. Close stops it; ctx ending stops it too.
func New(ctx context.Context, h host.Host, opts Options) (*Gossip, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, opts.Topic)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	syncM, err := newMetrics(opts.Registerer, string(SyncProtocol))
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
		syncM:  syncM,
	}
	if opts.RateLimit != rate.Inf {
		g.limiter = newPeerLimiter(opts.RateLimit, opts.RateBurst, opts.MaxRateBuckets)
	}
	scored := []string{opts.Topic}
	if opts.Heartbeats != nil {
		hm, err := newMetrics(opts.Registerer, opts.Heartbeats.Topic)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("gossip: %w", err)
		}
		g.hb = &heartbeats{opts: *opts.Heartbeats, m: hm, started: time.Now(), latest: make(map[string]NodeHeartbeat)}
		scored = append(scored, opts.Heartbeats.Topic)
	}
	if opts.Indicators != nil {
		if g.ind, err = newIndicators(opts.Registerer, *opts.Indicators); err != nil {
			cancel()
			return nil, fmt.Errorf("gossip: %w", err)
		}
		scored = append(scored, g.ind.opts.Topic)
	}
	params, thresholds := scoreParams(g.appScore, scored...)
	const validateQueueSize = 1024
	fail := func(what string, err error) (*Gossip, error) {
		cancel()
		return nil, fmt.Errorf("gossip: %s: %w", what, err)
	}
	psOpts := []pubsub.Option{
		pubsub.WithFloodPublish(true),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithRawTracer(&tracer{topic: opts.Topic, m: m}),
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(g.setScores), opts.ScoreInspectPeriod),
		// Signature checks dominate validation (~35 µs each); the default
		// queue of 32 overflows on an honest burst (a mesh-wide attack
		// seen by many sites, heartbeats of a large mesh). Overflow is
		// still bounded, and counted as queue_full.
		pubsub.WithValidateQueueSize(validateQueueSize),
	}
	if g.ind != nil {
		psOpts = append(psOpts, pubsub.WithRawTracer(g.ind.tracer()))
	}
	g.ps, err = pubsub.NewGossipSub(ctx, h, psOpts...)
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
	if g.hb != nil {
		if err := g.startHeartbeats(ctx); err != nil {
			g.Close()
			return nil, fmt.Errorf("gossip: %w", err)
		}
	}
	if g.ind != nil {
		if err := g.startIndicators(ctx); err != nil {
			g.Close()
			return nil, fmt.Errorf("gossip: %w", err)
		}
	}
	if opts.Log != nil {
		g.sync = newSyncer(g, opts.Log)
		g.have = g.sync.have
		g.sync.start(ctx)
	}
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

// PeerScores returns the GossipSub scores of connected peers as last
// inspected (every Options.ScoreInspectPeriod).
func (g *Gossip) PeerScores() map[peer.ID]float64 {
	g.scoreMu.Lock()
	defer g.scoreMu.Unlock()
	return maps.Clone(g.scores)
}

func (g *Gossip) setScores(s map[peer.ID]float64) {
	g.scoreMu.Lock()
	g.scores = s
	g.scoreMu.Unlock()
}

// appScore is the application-specific part of a peer's score: the rate
// limiter's penalty.
func (g *Gossip) appScore(p peer.ID) float64 {
	if g.limiter == nil {
		return 0
	}
	return g.limiter.score(p)
}

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
	if g.hb != nil && g.hb.sub != nil {
		g.hb.sub.Cancel()
	}
	g.cancel()
	if g.sync != nil {
		g.sync.close()
	}
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
	if src != g.h.ID() && g.limiter != nil && !g.limiter.allow(src, g.now()) {
		return g.drop(pubsub.ValidationIgnore, ReasonRateLimited, src, author, nil)
	}

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
	if g.have != nil {
		g.have.add(env.OriginID(), env.Seq)
	}
	g.m.accept()
	return pubsub.ValidationAccept
}

func (g *Gossip) drop(res pubsub.ValidationResult, reason string, src, author peer.ID, err error) pubsub.ValidationResult {
	return g.dropOn(g.m, g.opts.Topic, res, reason, src, author, err)
}

func (g *Gossip) dropOn(m *metrics, topic string, res pubsub.ValidationResult, reason string, src, author peer.ID, err error) pubsub.ValidationResult {
	m.reject(reason)
	verdict := "reject"
	if res == pubsub.ValidationIgnore {
		verdict = "ignore"
	}
	g.opts.Logger.Debug("gossip message dropped",
		"topic", topic, "reason", reason, "verdict", verdict, "author", author, "via", src, "err", err)
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
