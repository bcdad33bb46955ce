package gossip

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

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
	spec    *topicSpec
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
	return g.hb.spec.m.snapshot()
}

// heartbeatLoop publishes this node's heartbeat every interval until ctx
// ends. The first beat goes out after a short jittered delay, so that a
// node announces itself soon after joining.
func (g *Gossip) heartbeatLoop(ctx context.Context) {
	for d := jitter(min(time.Second, g.hb.opts.Interval)); sleep(ctx, d); d = g.hb.opts.Interval {
		if err := g.publishHeartbeat(ctx); err != nil && ctx.Err() == nil {
			g.opts.Logger.Debug("heartbeat not published", "err", err)
		}
	}
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
	return g.publish(ctx, hb.topic, hb.spec, raw)
}

// keep is the heartbeat topic's last stage: a heartbeat whose sequence
// number is not above the last one kept from its node is a replay;
// otherwise it becomes the node's latest, evicting the stalest node's when
// MaxNodes are kept. Heartbeats never reach the Handler.
func (hb *heartbeats) keep(_ context.Context, a *admission) (string, error) {
	beat, _ := a.payload.(Heartbeat)
	node := a.origin
	hb.mu.Lock()
	defer hb.mu.Unlock()
	prev, ok := hb.latest[node]
	if ok && a.env.Seq <= prev.Seq {
		return ReasonReplay, fmt.Errorf("seq %d not above %d", a.env.Seq, prev.Seq)
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
	hb.latest[node] = NodeHeartbeat{Node: node, Heartbeat: beat, Sent: a.env.Time, Received: a.now, Seq: a.env.Seq}
	return "", nil
}
