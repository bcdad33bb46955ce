// Package gossip owns Meshward's peer-to-peer layer: the node's libp2p
// identity key, the libp2p host (TCP and QUIC only, optional connection
// gater), the bootstrap loop that keeps a node connected to its configured
// peers, the peer book that remembers peers across restarts, the GossipSub
// topics on which nodes exchange signed sightings, indicator reports and
// heartbeats, and the anti-entropy protocol that repairs what gossip
// missed.
//
// Every message on the sightings topic is checked by a topic validator
// before it is delivered or forwarded: the forwarding peer must be within
// its rate limit (a token bucket per forwarding peer; excess is Ignored and
// counted "rate_limited"), the envelope must open (intel.Open: size,
// format, version, signature), its signer must be the GossipSub author,
// the signer must be on the roster, its timestamp must be fresh, its
// payload must decode, and it must not be a replay. Only then is it handed
// to the Handler, which persists it; forwarding happens after the Handler
// returns, so what a node relays it has already stored. Every rejection is
// counted (Prometheus and Rejected) and logged at debug level with its
// reason.
//
// GossipSub peer scoring is on for every topic: Rejected messages cost a
// peer heavily (the count squared), the rate limiter's refusals lower its
// application score, and below GraylistThreshold everything it sends is
// ignored. Loopback addresses are exempt from the IP-colocation penalty.
//
// Heartbeats (Options.Heartbeats) are small signed JSON reports each node
// publishes every interval on their own topic; they pass the same checks
// (a replay is one whose sequence number is not above the last one kept),
// never reach the Handler, and only the latest per node is kept, for at
// most a bounded number of nodes (Heartbeats).
//
// Indicator reports (Options.Indicators, topic /meshward/indicators/1) are
// intel.IndicatorReport payloads of intel.KindIndicator envelopes that
// operators and threat feeds share mesh-wide (PublishIndicator). They pass
// the sightings topic's checks, with their payload bounded by
// MaxIndicatorPayload and strictly decoded, and are counted under their
// own topic label (IndicatorRejected); accepted ones reach the same
// Handler and travel through anti-entropy like sightings. They are
// intelligence, never policy: nothing here acts on them.
//
// Anti-entropy (Options.Log, protocol /meshward/sync/1) runs when a peer
// connects and with a random peer every SyncInterval (jittered), one
// session per peer at a time. The puller sends, per origin, the spans of
// sequence numbers it holds (high-water marks are not gap-free, so a bare
// mark would hide holes); the server streams every envelope it holds that
// lies in none of those spans, at most SyncMaxSession per session, each a
// length-prefixed frame no larger than intel.MaxEnvelopeSize, under a
// deadline. The puller repeats while sessions come back full. Received
// envelopes pass the validator's checks (signature, roster, kind, payload,
// replay, size) except freshness: old envelopes are the point, though ones
// from the future are refused. An envelope already held is counted as a
// replay and not handed on, so the Handler sees each at most once per
// process; it must still treat a known envelope as success. The spans are
// read from the Log once and then kept from what the Handler accepts.
//
// Discovery: bootstrap peers from configuration (Bootstrapper, which
// reconnects with backoff), peers remembered across restarts (PeerBook,
// peers.json in the data directory), and optionally multicast DNS on the
// LAN (StartMDNS), off by default.
//
// The package must never re-encode an envelope (it relays the exact bytes it
// received), never block or drop a message without counting it, never touch
// the global Prometheus registry, and never decide policy: it reports what
// arrived and leaves corroboration and enforcement to its callers.
package gossip
