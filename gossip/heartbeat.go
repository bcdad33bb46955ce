package gossip

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// Heartbeat defaults and bounds.
const (
	DefaultHeartbeatTopic    = "/meshward/heartbeats/1"
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultMaxHeartbeats     = 4096
	// MaxHeartbeatPayload bounds a heartbeat's JSON payload.
	MaxHeartbeatPayload = 4 << 10
)

// Heartbeat is what a node says about itself every interval, the payload
// of an intel.KindHeartbeat envelope.
type Heartbeat struct {
	Version   string  `json:"version"`
	Site      string  `json:"site"`
	UptimeS   int64   `json:"uptime_s"`
	Sightings uint64  `json:"sightings"`
	Peers     int     `json:"peers"`
	Load      float64 `json:"load"`
}

// NodeHeartbeat is the latest heartbeat received from one node.
type NodeHeartbeat struct {
	Node string // node ID
	Heartbeat
	Sent     time.Time // the envelope's timestamp
	Received time.Time
	Seq      uint64
}

// HeartbeatOptions configures the heartbeat topic.
type HeartbeatOptions struct {
	// Key signs this node's heartbeats; nil means listen only.
	Key ed25519.PrivateKey
	// Interval between heartbeats; 0 means DefaultHeartbeatInterval.
	Interval time.Duration
	// Info supplies Version, Site, Sightings and Load; gossip fills in
	// UptimeS and Peers. Nil sends those as zero.
	Info func() Heartbeat
	// MaxNodes bounds the nodes whose latest heartbeat is kept; 0 means
	// DefaultMaxHeartbeats. When full, the stalest entry is evicted.
	MaxNodes int
	// Topic; "" means DefaultHeartbeatTopic.
	Topic string
}

func (o *HeartbeatOptions) setDefaults() error {
	if o.Interval == 0 {
		o.Interval = DefaultHeartbeatInterval
	}
	if o.MaxNodes == 0 {
		o.MaxNodes = DefaultMaxHeartbeats
	}
	if o.Topic == "" {
		o.Topic = DefaultHeartbeatTopic
	}
	if o.Interval < 0 || o.MaxNodes < 0 {
		return fmt.Errorf("gossip: heartbeat interval %s and max nodes %d must not be negative", o.Interval, o.MaxNodes)
	}
	if o.Key != nil && len(o.Key) != ed25519.PrivateKeySize {
		return errors.New("gossip: heartbeat key is not an ed25519 private key")
	}
	return nil
}

type heartbeats struct {
	opts    HeartbeatOptions
	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	m       *metrics
	started time.Time

	mu      sync.Mutex
	latest  map[string]NodeHeartbeat
	lastSeq uint64 // of our own heartbeats
}

// Heartbeats returns the latest heartbeat of every node heard from (this
// node included once it has published), sorted by node ID. Nil when the
// heartbeat topic is off.
func (g *Gossip) Heartbeats() []NodeHeartbeat {
	if g.hb == nil {
		return nil
	}
	g.hb.mu.Lock()
	out := make([]NodeHeartbeat, 0, len(g.hb.latest))
	for _, h := range g.hb.latest {
		out = append(out, h)
	}
	g.hb.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeHeartbeat) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// HeartbeatRejected returns the heartbeat messages dropped, by reason.
func (g *Gossip) HeartbeatRejected() map[string]uint64 {
	if g.hb == nil {
		return nil
	}
	return g.hb.m.snapshot()
}

func (g *Gossip) startHeartbeats(ctx context.Context) error {
	hb := g.hb
	if err := g.ps.RegisterTopicValidator(hb.opts.Topic, g.validateHeartbeat, pubsub.WithValidatorTimeout(g.opts.HandlerTimeout)); err != nil {
		return fmt.Errorf("register heartbeat validator: %w", err)
	}
	var err error
	if hb.topic, err = g.ps.Join(hb.opts.Topic); err != nil {
		return fmt.Errorf("join %s: %w", hb.opts.Topic, err)
	}
	if hb.sub, err = hb.topic.Subscribe(); err != nil {
		return fmt.Errorf("subscribe %s: %w", hb.opts.Topic, err)
	}
	g.loop.Add(1)
	go func() {
		defer g.loop.Done()
		for {
			if _, err := hb.sub.Next(ctx); err != nil {
				return
			}
		}
	}()
	if hb.opts.Key == nil {
		return nil
	}
	g.loop.Add(1)
	go func() {
		defer g.loop.Done()
		// The first beat goes out after a short jittered delay, so that a
		// node announces itself soon after joining.
		for d := jitter(min(time.Second, hb.opts.Interval)); sleep(ctx, d); d = hb.opts.Interval {
			if err := g.publishHeartbeat(ctx); err != nil && ctx.Err() == nil {
				g.opts.Logger.Debug("heartbeat not published", "err", err)
			}
		}
	}()
	return nil
}

func (g *Gossip) publishHeartbeat(ctx context.Context) error {
	hb := g.hb
	var beat Heartbeat
	if hb.opts.Info != nil {
		beat = hb.opts.Info()
	}
	beat.UptimeS = int64(time.Since(hb.started) / time.Second)
	beat.Peers = len(g.h.Network().Peers())
	now := g.now()
	hb.mu.Lock()
	// Unix nanoseconds keep the sequence increasing across restarts.
	seq := max(hb.lastSeq+1, uint64(now.UnixNano()))
	hb.lastSeq = seq
	hb.mu.Unlock()
	raw, err := intel.SealJSON(hb.opts.Key, intel.KindHeartbeat, seq, now, beat)
	if err != nil {
		return err
	}
	if !g.enter() {
		return ErrClosed
	}
	defer g.inflight.Done()
	return hb.topic.Publish(ctx, raw)
}

// validateHeartbeat checks a heartbeat like a sighting (signature, author,
// roster, freshness, rate) and keeps it if it is newer than the last one
// from its node. Heartbeats never reach the Handler.
func (g *Gossip) validateHeartbeat(_ context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	hb := g.hb
	author := msg.GetFrom()
	if !g.enter() {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationIgnore, ReasonShuttingDown, src, author, nil)
	}
	defer g.inflight.Done()
	now := g.now()
	if src != g.h.ID() && g.limiter != nil && !g.limiter.allow(src, now) {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationIgnore, ReasonRateLimited, src, author, nil)
	}
	env, err := intel.Open(msg.GetData())
	if err != nil {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationReject, openReason(err), src, author, err)
	}
	if !isAuthor(author, env.Origin) {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationReject, ReasonAuthorMismatch, src, author, nil)
	}
	node := author.String()
	if g.opts.Roster != nil && !g.opts.Roster.IsMember(node) {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationReject, ReasonNotMember, src, author, nil)
	}
	if skew := now.Sub(env.Time); skew > g.opts.MaxClockSkew || skew < -g.opts.MaxClockSkew {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationIgnore, ReasonStale, src, author, nil)
	}
	if env.Kind != intel.KindHeartbeat {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationReject, ReasonUnexpectedKind, src, author, fmt.Errorf("kind %s", env.Kind))
	}
	if len(env.Payload) > MaxHeartbeatPayload {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationReject, ReasonOversized, src, author, nil)
	}
	var beat Heartbeat
	if err := json.Unmarshal(env.Payload, &beat); err != nil {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationReject, ReasonMalformed, src, author, err)
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	prev, ok := hb.latest[node]
	if ok && env.Seq <= prev.Seq {
		return g.dropOn(hb.m, hb.opts.Topic, pubsub.ValidationIgnore, ReasonReplay, src, author, nil)
	}
	if !ok && len(hb.latest) >= hb.opts.MaxNodes {
		var stalest string
		for n, h := range hb.latest {
			if stalest == "" || h.Received.Before(hb.latest[stalest].Received) {
				stalest = n
			}
		}
		delete(hb.latest, stalest)
	}
	hb.latest[node] = NodeHeartbeat{Node: node, Heartbeat: beat, Sent: env.Time, Received: now, Seq: env.Seq}
	hb.m.accept()
	return pubsub.ValidationAccept
}
