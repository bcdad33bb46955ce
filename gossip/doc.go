// Package gossip owns Meshward's peer-to-peer layer: the node's libp2p
// identity key, the libp2p host (TCP and QUIC only), the bootstrap loop that
// keeps a node connected to its configured peers, and the GossipSub topic on
// which nodes exchange signed sightings.
//
// Every message on the topic is checked by a topic validator before it is
// delivered or forwarded: the envelope must open (intel.Open: size, format,
// version, signature), its signer must be the GossipSub author, the signer
// must be on the roster, its timestamp must be fresh, its payload must decode,
// and it must not be a replay. Only then is it handed to the Handler, which
// persists it; forwarding happens after the Handler returns, so what a node
// relays it has already stored. Every rejection is counted (Prometheus and
// Rejected) and logged at debug level with its reason.
//
// The package must never re-encode an envelope (it relays the exact bytes it
// received), never block or drop a message without counting it, never touch
// the global Prometheus registry, and never decide policy: it reports what
// arrived and leaves corroboration and enforcement to its callers.
package gossip
