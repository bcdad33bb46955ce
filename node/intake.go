package node

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/siem"
)

// onDetection is the first tier: this node's own evidence. It may block
// locally at once, and it signs, stores and publishes the sighting.
func (n *Node) onDetection(s intel.Sighting) {
	now := n.now()
	key := s.Indicator.Key()
	// The detectors' allowlist holds the configured protected ranges; the
	// mesh's own addresses join the roster at run time, so they are
	// checked here: a node never reports another node of its mesh.
	for _, p := range n.deps.Consensus.Protected() {
		if q, ok := s.Indicator.Prefix(); ok && p.Overlaps(q) {
			n.stats.suppressed.Add(1)
			n.log.Debug("detection of a protected address suppressed", "indicator", s.Indicator.Value, "protected", p)
			return
		}
	}
	n.stats.detections.Add(1)
	n.timelines.mark(key, now, detected)
	s.Site = n.deps.Config.Site
	n.emit(siem.DetectionEvent(n.deps.ID, s, now))
	n.log.Info("detection", "indicator", s.Indicator.Value, "detector", s.Detector, "count", s.Count)

	if lb := n.deps.Config.LocalBlock; lb.Enabled {
		p := intel.NewPolicy(intel.ActionBlock, s.Indicator, "local detection by "+s.Detector, "local:"+n.deps.ID, now, lb.TTL)
		if err := n.putDecision(p); err != nil {
			n.log.Error("store local decision", "indicator", s.Indicator.Value, "err", err)
		}
	}

	seq, err := n.outbox.send(n.group.Context(), intel.KindSighting, s, s.Indicator, now, n.deps.Gossip.Publish)
	if err != nil {
		n.log.Error("send own sighting", "indicator", s.Indicator.Value, "err", err)
		return
	}
	n.stats.stored.Add(1)
	n.publishDetection(s, seq, now) // stored: the dashboard may act on it
	n.timelines.mark(key, now, received)
	n.corr.enqueue(s.Indicator)
	n.quar.consider(n, s, seq, now) // quarantine.go
}

// gossipHandler is the node as gossip's Handler: every envelope that
// passed validation is stored, then, for a sighting, evaluated.
type gossipHandler struct{ n *Node }

var _ gossip.Handler = (*gossipHandler)(nil)

// HandleEnvelope is called for every envelope that passed validation,
// before it is forwarded. Gossip calls it for many envelopes at once
// (gossip.ValidatorConcurrency per topic, gossip.SyncConcurrency per
// anti-entropy session); PutEnvelope writes the envelopes waiting
// together in one commit and returns once this one is on disk, so the
// envelope is durable before it is accepted and forwarded.
func (h *gossipHandler) HandleEnvelope(_ context.Context, env *intel.Envelope, _ peer.ID) error {
	n := h.n
	now := n.now()
	added, err := n.deps.Store.PutEnvelope(env, now)
	if err != nil {
		return fmt.Errorf("store envelope: %w", err)
	}
	if env.Kind == intel.KindIndicator {
		if added {
			n.stats.reports.Add(1)
			// Intelligence only, unless a feed policy of the mesh
			// promotes it (promote.go).
			n.promote.offer(env)
		}
		return nil
	}
	if !added || env.Kind != intel.KindSighting {
		return nil
	}
	s, err := intel.DecodeSighting(env)
	if err != nil {
		return err
	}
	n.stats.stored.Add(1)
	n.timelines.mark(s.Indicator.Key(), now, received)
	n.emit(siem.SightingEvent(n.deps.ID, env.OriginID(), s, now))
	n.corr.enqueue(s.Indicator)
	return nil
}
