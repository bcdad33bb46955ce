package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/refusal"
	"github.com/meshward/meshward/internal/routine"
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

// ValidatorConcurrency is how many messages of one topic are validated at
// once (Handler included), each in its own goroutine: signatures are
// verified on every core, and envelopes waiting for the store's commit
// share it. Beyond it GossipSub drops the message, counted as throttled
// and charged to the forwarding peer's rate.
const ValidatorConcurrency = 1024

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("gossip closed")

// Handler receives every envelope that passed validation, before it is
// forwarded to other peers: it is called from inside the GossipSub validator,
// which GossipSub runs in a goroutine of its own for each message, up to
// ValidatorConcurrency at once per topic; anti-entropy hands on up to
// SyncConcurrency envelopes of a session at once. Many calls are thus in
// flight together, which a store that commits writes in groups needs.
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
	// Verify opens envelopes, remembering which bytes it has verified;
	// the node shares one with consensus, whose proofs are the sightings
	// gossip already verified. Nil verifies every envelope.
	Verify *intel.VerifyCache
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
	// SyncMaxAge, when positive, refuses (as stale) envelopes anti-entropy
	// brings that are older than it: the node passes its store's
	// retention, so that a peer cannot refill what the node has pruned.
	// 0 means no bound.
	SyncMaxAge time.Duration

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
	// RouterHeartbeat is the interval of GossipSub's heartbeat, which
	// grafts and prunes the meshes, emits gossip (IHAVE) and scores the
	// peers; 0 means GossipSub's, a second. A slower one costs less at
	// rest and repairs meshes later (see gossipSubParams).
	RouterHeartbeat time.Duration
	// ScoreDecayInterval is how often the peer scores' counters decay;
	// 0 means a second (GossipSub's least). The decay factors follow,
	// so that every counter keeps its half-life.
	ScoreDecayInterval time.Duration
	// MeshDegree is the number of peers each node keeps in its mesh of
	// a topic (GossipSub's D), the others following (meshParams); 0
	// means GossipSub's 6. Every node receives each message from about
	// that many peers, so the copies a mesh processes grow with it: a
	// smaller mesh costs less CPU and bandwidth, and a message reaches
	// every node over more hops.
	MeshDegree int
	// GossipTargets, when positive, is how many peers outside its mesh
	// of a topic a node sends gossip (IHAVE: the IDs of the messages it
	// saw lately) to at each heartbeat. 0 keeps GossipSub's: as many as
	// the mesh degree or a quarter of those peers, whichever is more, so
	// that a node holding hundreds of connections (a raft server that
	// every edge polls) sends a hundred IHAVEs a topic every heartbeat
	// for as long as the messages of the last three are remembered.
	GossipTargets int
	// MeshPublishOnly sends a node's own messages to its mesh peers of
	// the topic only, as it forwards others'. Unset (GossipSub's flood
	// publishing), a node sends its own messages to every peer of the
	// topic it is connected to whose score is above PublishThreshold, so
	// that what it publishes does not hang on its mesh; a node holding
	// hundreds of connections (a raft server that every edge polls)
	// then sends hundreds of copies at once, and each receiver passes
	// its copy on to a mesh most of whose nodes had one already.
	MeshPublishOnly bool

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
	if o.SyncInterval < 0 || o.SyncMaxSession < 0 || o.SyncTimeout < 0 || o.SyncMaxAge < 0 {
		return fmt.Errorf("gossip: anti-entropy interval %s, session limit %d, timeout %s and max age %s must not be negative",
			o.SyncInterval, o.SyncMaxSession, o.SyncTimeout, o.SyncMaxAge)
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
	if o.RouterHeartbeat < 0 {
		return fmt.Errorf("gossip: Options.RouterHeartbeat %s is negative", o.RouterHeartbeat)
	}
	if n := o.GossipTargets; n < 0 || n > MaxMeshDegree {
		return fmt.Errorf("gossip: Options.GossipTargets %d: want 0 (GossipSub's) or 1 to %d", n, MaxMeshDegree)
	}
	if d := o.MeshDegree; d != 0 && (d < MinMeshDegree || d > MaxMeshDegree) {
		return fmt.Errorf("gossip: Options.MeshDegree %d: want 0 (GossipSub's) or %d to %d", d, MinMeshDegree, MaxMeshDegree)
	}
	if o.ScoreDecayInterval == 0 {
		o.ScoreDecayInterval = pubsub.DefaultDecayInterval
	}
	if o.ScoreDecayInterval < pubsub.DefaultDecayInterval {
		return fmt.Errorf("gossip: Options.ScoreDecayInterval %s is under %s", o.ScoreDecayInterval, pubsub.DefaultDecayInterval)
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

// Gossip is one node's membership in the sightings topic, and optionally
// the heartbeat and indicator topics and anti-entropy.
type Gossip struct {
	h       host.Host
	opts    Options
	ps      *pubsub.PubSub
	topic   *pubsub.Topic
	replay  *replayCache
	now     func() time.Time
	limiter *peerLimiter // nil when the rate is unlimited
	tracer  *tracer      // counts what GossipSub drops on its own
	refused *refusal.Counter

	sightings *topicSpec  // admission on the sightings topic
	syncSpec  *topicSpec  // admission of what anti-entropy receives
	sync      *syncer     // nil when Options.Log is nil
	hb        *heartbeats // nil when Options.Heartbeats is nil
	ind       *indicators // nil when Options.Indicators is nil
	have      *holdings   // nil when anti-entropy is off
	scoreMu   sync.Mutex
	scores    map[peer.ID]float64
	members   memberMemo // member's answers (boundary.go)

	routines *routine.Group // subscription readers, heartbeats, anti-entropy

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// New starts GossipSub on h (flood publishing on unless MeshPublishOnly, strict signing, peer
// scoring), registers the envelope validator, joins the topic and
// subscribes, so the node is in the mesh; with Options.Heartbeats it does
// the same for the heartbeat topic, with Options.Indicators for the
// indicator topic, and with Options.Log it serves and runs anti-entropy.
// A host carries one Gossip: GossipSub owns the host's pubsub protocols.
// Everything New starts runs until Close or until ctx ends; ctx ending
// also abandons a start that is stuck.
func New(ctx context.Context, h host.Host, opts Options) (*Gossip, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gossip{
		h:       h,
		opts:    opts,
		replay:  newReplayCache(opts.ReplayCapacity),
		now:     time.Now,
		refused: refusal.New(opts.Logger),
	}
	if opts.RateLimit != rate.Inf {
		g.limiter = newPeerLimiter(opts.RateLimit, opts.RateBurst, opts.MaxRateBuckets)
	}
	var err error
	if g.sightings, err = g.newSpec(opts.Topic, true, kindsOf(opts.AcceptKinds...), freshWindow, g.handOn(false)); err != nil {
		return nil, err
	}
	if g.syncSpec, err = g.newSpec(string(SyncProtocol), false, g.syncAccepts, freshNotAhead, g.handOn(true)); err != nil {
		return nil, err
	}
	g.syncSpec.maxAge = opts.SyncMaxAge
	specs := []*topicSpec{g.sightings}
	if opts.Heartbeats != nil {
		g.hb = &heartbeats{opts: *opts.Heartbeats, started: time.Now(), latest: make(map[string]NodeHeartbeat)}
		if g.hb.spec, err = g.newSpec(g.hb.opts.Topic, true, kindsOf(intel.KindHeartbeat), freshWindow, g.hb.keep); err != nil {
			return nil, err
		}
		specs = append(specs, g.hb.spec)
	}
	if opts.Indicators != nil {
		g.ind = &indicators{opts: *opts.Indicators}
		g.ind.opts.setDefaults()
		if g.ind.spec, err = g.newSpec(g.ind.opts.Topic, true, kindsOf(intel.KindIndicator), freshWindow, g.handOn(false)); err != nil {
			return nil, err
		}
		specs = append(specs, g.ind.spec)
	}

	g.routines = routine.New(ctx)
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	g.tracer = newTracer(specs...)
	if g.opts.Registerer != nil {
		if g.tracer.droppedMetric, err = newDroppedMetric(g.opts.Registerer); err != nil {
			return nil, fmt.Errorf("gossip: %w", err)
		}
	}
	if g.limiter != nil {
		g.tracer.charge = func(from peer.ID) { g.limiter.allow(from, g.now()) }
	}
	labels := make([]string, len(specs))
	for i, s := range specs {
		labels[i] = s.label
	}
	params, thresholds := scoreParams(g.appScore, opts.ScoreDecayInterval, labels...)
	const validateQueueSize, peerOutboundQueue = 1024, 256
	psOpts := []pubsub.Option{
		pubsub.WithFloodPublish(!opts.MeshPublishOnly),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithRawTracer(g.tracer),
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(g.setScores), opts.ScoreInspectPeriod),
		// Signature checks dominate validation (~30 µs each); the default
		// queue of 32 overflows on an honest burst (a mesh-wide attack
		// seen by many sites, heartbeats of a large mesh). Overflow is
		// still bounded, and counted as queue_full.
		pubsub.WithValidateQueueSize(validateQueueSize),
		// GossipSub's queue to each peer holds 32 RPCs; past it RPCs are
		// dropped (counted: DroppedRPCs) and the peer waits for gossip.
		// A server sends to every edge it holds a connection to, and a
		// burst of commits outruns 32: 600 simulated nodes dropped 35,000
		// RPCs while forming, 44 with a queue of 256, and formed in 1 m
		// 50 s instead of 2 m 1 s. The queue holds pointers to RPCs
		// shared by the peers.
		pubsub.WithPeerOutboundQueueSize(peerOutboundQueue),
		// Only members take part (boundary.go): strangers' subscriptions
		// are counted, and they get no mesh, gossip or publishes.
		pubsub.WithPeerFilter(g.peerFilter),
		pubsub.WithSubscriptionFilter(memberSubscriptions{g}),
	}
	psOpts = append(psOpts, pubsub.WithGossipSubParams(routerParams(opts)))
	g.ps, err = pubsub.NewGossipSub(g.routines.Context(), h, psOpts...)
	if err != nil {
		return nil, fmt.Errorf("gossip: start gossipsub: %w", err)
	}
	if g.topic, err = g.join(g.sightings); err != nil {
		return nil, err
	}
	if g.hb != nil {
		if g.hb.topic, err = g.join(g.hb.spec); err != nil {
			return nil, err
		}
		if g.hb.opts.Key != nil {
			g.routines.Go(g.heartbeatLoop)
		}
	}
	if g.ind != nil {
		if g.ind.topic, err = g.join(g.ind.spec); err != nil {
			return nil, err
		}
	}
	if opts.Log != nil {
		g.sync = newSyncer(g, opts.Log)
		g.have = g.sync.have
		g.sync.start(g.routines)
	}
	ok = true
	return g, nil
}

// newSpec builds a topic's admission spec and its counters.
func (g *Gossip) newSpec(label string, gossiped bool, kinds func(intel.Kind) bool, fresh freshness,
	keep func(context.Context, *admission) (string, error)) (*topicSpec, error) {
	m, err := newMetrics(g.opts.Registerer, label)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	return &topicSpec{label: label, m: m, gossiped: gossiped, kinds: kinds, fresh: fresh, keep: keep}, nil
}

// join registers spec's validator, joins its topic and keeps the
// subscription read until Close: messages were handled by the validator
// already; the subscription exists so that the node is in the mesh.
func (g *Gossip) join(spec *topicSpec) (*pubsub.Topic, error) {
	if err := g.ps.RegisterTopicValidator(spec.label, g.validator(spec),
		pubsub.WithValidatorTimeout(g.opts.HandlerTimeout),
		pubsub.WithValidatorConcurrency(ValidatorConcurrency),
		pubsub.WithValidatorInline(false)); err != nil {
		return nil, fmt.Errorf("gossip: register validator of %s: %w", spec.label, err)
	}
	t, err := g.ps.Join(spec.label)
	if err != nil {
		return nil, fmt.Errorf("gossip: join %s: %w", spec.label, err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		return nil, fmt.Errorf("gossip: subscribe %s: %w", spec.label, err)
	}
	g.routines.Go(func(ctx context.Context) {
		defer sub.Cancel()
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
		}
	})
	return t, nil
}

// Publish sends raw, an intel.Seal output, verbatim. The local validator
// runs first, so an envelope this node would reject is not sent and the
// error says why (the reason is also counted).
func (g *Gossip) Publish(ctx context.Context, raw []byte) error {
	return g.publish(ctx, g.topic, g.sightings, raw)
}

func (g *Gossip) publish(ctx context.Context, t *pubsub.Topic, spec *topicSpec, raw []byte) error {
	if !g.enter() {
		return ErrClosed
	}
	defer g.inflight.Done()
	if err := t.Publish(ctx, raw); err != nil {
		return fmt.Errorf("publish on %s: %w", spec.label, err)
	}
	return nil
}

// Rejected returns the count of dropped messages by reason (see the
// Reason constants); reasons never seen are absent.
func (g *Gossip) Rejected() map[string]uint64 { return g.sightings.m.snapshot() }

// DroppedRPCs returns how many RPCs GossipSub dropped on their way to a
// peer whose outbound queue was full (meshward_gossip_rpc_dropped_total).
func (g *Gossip) DroppedRPCs() uint64 { return g.tracer.dropped.Load() }

// Accepted returns how many envelopes passed validation and were handled.
func (g *Gossip) Accepted() uint64 { return g.sightings.m.acceptedN.Load() }

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

// appScore is the application-specific part of a peer's score: the
// stranger penalty (boundary.go) and the rate limiter's penalty.
func (g *Gossip) appScore(p peer.ID) float64 {
	score := 0.0
	if !g.member(p) {
		score = StrangerScore
	}
	if g.limiter != nil {
		score += g.limiter.score(p)
	}
	return score
}

// Topic returns the topic name.
func (g *Gossip) Topic() string { return g.opts.Topic }

// Close stops GossipSub, the subscriptions, heartbeats and anti-entropy,
// and waits until none of their goroutines and no Publish or Handler call
// is running. It is idempotent. It does not close the host.
func (g *Gossip) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	g.routines.Close()
	if g.sync != nil {
		g.sync.close()
	}
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
