package gossip

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The servers' topic: each voter hands its certificate of the chain head
// to the other raft servers on it, so that the leader publishes one
// message per batch on the certified topic (the entries and a majority's
// certificates) instead of every voter publishing its own to every edge,
// and any server can answer an edge's catch-up with a majority's
// certificates (package consensus/certify). Only raft servers subscribe
// (SetSubscribed, as a node becomes one or stops being one): edges,
// which are in no mesh of the topic, neither receive nor relay its
// messages. Its messages are certify.Messages of certificates only,
// checked by the consensus side (the Handler: the author a voter, the
// signer the author, the mesh, the signature) after the topic's own
// checks (a roster member, the size); every refusal is counted by
// reason (Refused, meshward_gossip_servercerts_refused_total).

// DefaultServerCertsTopic is the servers' topic's name.
const DefaultServerCertsTopic = "/meshward/servercerts/1"

// DefaultMaxServerCertsSize bounds a message of the servers' topic: a
// few certificates.
const DefaultMaxServerCertsSize = 16 << 10

// JoinServerCerts registers the servers' topic's validator (handler
// checks and takes a message) and joins it without subscribing.
func (g *Gossip) JoinServerCerts(handler func(ctx context.Context, from peer.ID, data []byte) error) (*Certified, error) {
	return g.JoinCertified(CertifiedOptions{
		Handler:      handler,
		Topic:        DefaultServerCertsTopic,
		MaxSize:      DefaultMaxServerCertsSize,
		Metric:       "meshward_gossip_servercerts_refused_total",
		Unsubscribed: true,
	})
}
