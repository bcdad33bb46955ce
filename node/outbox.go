package node

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

// envelopeStore is what the outbox needs of the store.
type envelopeStore interface {
	NextSeq() (uint64, error)
	PutEnvelope(env *intel.Envelope, received time.Time) (added bool, err error)
}

var _ envelopeStore = (*store.Store)(nil)

// outbox is the one path by which this node's own intelligence (its
// sightings and indicator reports) leaves it: seal, store, publish. What it
// sends is on disk before it leaves the node; if gossip cannot take it now,
// anti-entropy carries it later.
type outbox struct {
	key   ed25519.PrivateKey
	store envelopeStore
	log   *slog.Logger
}

// publishFunc hands sealed bytes to gossip (one topic per kind).
type publishFunc func(ctx context.Context, raw []byte) error

// send signs payload as an envelope of kind at the next sequence number,
// stores it and publishes it. It fails only when the envelope could not be
// sealed or stored; a failed publish is logged, as anti-entropy will
// carry the envelope.
func (o *outbox) send(ctx context.Context, kind intel.Kind, payload any, subject intel.Indicator, at time.Time, publish publishFunc) (uint64, error) {
	seq, err := o.store.NextSeq()
	if err != nil {
		return 0, fmt.Errorf("next sequence number: %w", err)
	}
	raw, err := intel.SealJSON(o.key, kind, seq, at, payload)
	if err != nil {
		return 0, fmt.Errorf("seal %s: %w", kind, err)
	}
	env, err := intel.Open(raw)
	if err != nil {
		return 0, fmt.Errorf("open own %s: %w", kind, err)
	}
	if _, err := o.store.PutEnvelope(env, at); err != nil {
		return 0, fmt.Errorf("store own %s: %w", kind, err)
	}
	if err := publish(ctx, raw); err != nil {
		o.log.Warn("publish; anti-entropy will carry it", "kind", kind, "indicator", subject.Value, "err", err)
	}
	return seq, nil
}
