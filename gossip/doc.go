// Package gossip owns Meshward's peer-to-peer layer: the node's libp2p
// identity key, the libp2p host (TCP and QUIC only, optional connection
// gater), the bootstrap loop that keeps a node connected to its configured
// peers, the peer book that remembers peers across restarts, the GossipSub
// topics on which nodes exchange signed sightings, indicator reports and
// heartbeats, and the anti-entropy protocol that repairs what gossip
// missed.
//
// Admission is one pipeline (admission.go) for every topic and for
// anti-entropy alike, in the manner of GossipSub's validation pipeline
// with per-topic validators: the node must not be closing, the forwarding
// peer must be within its rate limit (a token bucket per forwarding peer,
// GossipSub only; excess is Ignored and counted "rate_limited"), the
// envelope must open (intel.Open: size, format, version, signature), its
// signer must be the GossipSub author (GossipSub only), the signer must be
// on the roster, its timestamp fresh, its kind one the topic carries, its
// payload must decode and validate as its kind requires (checkPayload),
// and it must not be a replay; then the topic's last stage keeps it. What
// differs between topics is a small spec (topicSpec: allowed kinds,
// freshness mode, last stage, counter label); what each reason costs the
// sender (Reject or Ignore) is one table (verdicts). On the sightings and
// indicator topics the last stage is the Handler, which persists the
// envelope; forwarding happens after the Handler returns, so what a node
// relays it has already stored. GossipSub runs the validator in a
// goroutine per message, up to ValidatorConcurrency per topic, and
// anti-entropy admits up to SyncConcurrency envelopes of a session at
// once: signatures are verified on every core while earlier envelopes
// wait for their sync, and a store that commits in groups writes the
// envelopes waiting together in one sync. Through the node's
// intel.VerifyCache a signature costs about half of what
// crypto/ed25519 spends (the signer's expanded key is kept), and the
// rest of admission and the store about as much again; BenchmarkIngest
// reports the CPU time per envelope, which bounds what two cores can
// take. Every rejection is counted (Prometheus
// meshward_gossip_rejected_total{topic,reason} and Rejected and its
// siblings) and logged at debug level with its reason, and so are the
// drops GossipSub decides on its own on our topics (tracer).
//
// GossipSub peer scoring is on for every topic: Rejected messages cost a
// peer heavily (the count squared), the rate limiter's refusals lower its
// application score, and below GraylistThreshold everything it sends is
// ignored. Loopback addresses are exempt from the IP-colocation penalty.
//
// Heartbeats (Options.Heartbeats) are small signed JSON reports each node
// publishes every interval on their own topic; they pass the same pipeline
// (their payload bounded by MaxHeartbeatPayload; a replay is one whose
// sequence number is not above the last one kept), never reach the
// Handler, and only the latest per node is kept, for at most a bounded
// number of nodes (Heartbeats).
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
// session per peer at a time, served to roster members only. The puller
// sends, per origin, the spans of sequence numbers it holds (high-water
// marks are not gap-free, so a bare mark would hide holes); the server
// streams every envelope it holds that lies in none of those spans, at
// most SyncMaxSession per session, each a length-prefixed frame no larger
// than intel.MaxEnvelopeSize, under a deadline. What a session may scan is
// bounded too: the server reads only the gaps between the puller's spans
// (at most syncMaxSpans+1 per origin, below its high-water mark; a summary
// with more spans is refused) and examines at most SyncMaxSession plus
// syncScanSlack stored envelopes, so that a crafted summary cannot make it
// walk its store. The puller repeats while sessions come back full. Received
// envelopes pass the same pipeline, counted under the label
// /meshward/sync/1, without the GossipSub-only stages and with another
// freshness mode: old envelopes are the point, though ones from the
// future are refused, and so are ones older than SyncMaxAge (the node's
// store retention: what it pruned is not refilled). An envelope already held is counted as a
// replay and not handed on, so the Handler sees each at most once per
// process; it must still treat a known envelope as success. The spans are
// read from the Log once and then kept from what the Handler accepts.
//
// Transport boundary (boundary.go; DESIGN rule 3). With a Roster, a
// stranger (a peer not on it) is refused at every door, and every refusal
// is counted in TransportRefusals, exported by the node as
// meshward_transport_refused_total{protocol,reason}: its anti-entropy
// streams are reset (not_member); on GossipSub its subscriptions are
// recorded but counted (not_member) and never served: the peer filter
// keeps it out of meshes and refuses its GRAFT, IHAVE and IWANT, and its
// application score, StrangerScore, lies below PublishThreshold whatever
// it earns (topic scores are capped) and above GraylistThreshold, so that
// none of our publishes reach it while what it sends is still validated
// and counted. A member's score is an ordinary one: once admitted, a
// joining node takes part at the next heartbeat.
//
// Configuration: Config is the node's "gossip" YAML section, with
// DefaultConfig and Validate (field paths relative to the section);
// Config.Options gives the Options it sets, and the node adds the rest.
//
// Lifecycle: New(ctx, ...) starts GossipSub, the subscription readers,
// heartbeats and anti-entropy on one routine.Group derived from ctx; Close
// (idempotent) cancels it and waits for all of them and for every Publish
// and Handler call. Bootstrapper, PeerBook and MDNS start in Start(ctx)
// and stop in an idempotent Close that waits for their goroutines.
//
// Discovery: bootstrap peers from configuration (Bootstrapper, which
// reconnects with backoff), peers remembered across restarts (PeerBook,
// peers.json in the data directory), and optionally multicast DNS on the
// LAN (NewMDNS), off by default.
//
// The package must never re-encode an envelope (it relays the exact bytes it
// received), never block or drop a message without counting it, never touch
// the global Prometheus registry, and never decide policy: it reports what
// arrived and leaves corroboration and enforcement to its callers.
package gossip
