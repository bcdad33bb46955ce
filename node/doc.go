// Package node is the composition root of a Meshward node. NewDeps builds
// the subsystems from a Config (identity, store, libp2p host, consensus,
// gossip, peer discovery, detectors, responders, event outputs) into a
// Deps; New only wires them; Node.Start starts the node's loops, log
// sources and servers, and Close stops everything it owns. Start (the
// function) does all three. Options let tests and the testnet hand in
// their own connection gater, clock and store.
//
// Besides wiring, the package holds the logic that belongs to no
// subsystem:
//
//   - the corroboration rule (corroborator, corroborate.go), behind small
//     interfaces for what it needs: sightings in a window, the roster and
//     the policies in force, a proposer;
//   - the one path by which the node's own intelligence leaves it
//     (outbox.go): seal, store, then publish;
//   - timelines and counters (process measurement);
//   - Reload: what may change at run time (rules, protected ranges, log
//     level, responders), validated and built before anything changes.
//   - the threat feeds (feeds.go): intel.feeds and runtime feeds run by an
//     intel/feeds Runner; each feed is fetched on schedule by one voter
//     (rendezvous hashing of its name over the voters) and published as
//     indicator reports through the outbox, never as a block.
//   - feed promotion (promoter, promote.go): an indicator report received
//     or published here that an enabled feed policy of the mesh takes
//     (source, confidence, type, validity, a permitted publisher, above
//     the floors, not warninglisted, not blocked already) becomes a feed
//     block proposal whose proof is the report's envelope as signed; a
//     bounded queue and a rate per feed policy, others' reports deferred
//     so that their publisher's proposal comes first, and a rescan of the
//     stored reports when a policy arrives or after drops. The FSM checks
//     all of it again.
//
// The node meets other packages' interfaces through small adapters:
// gossipHandler (gossip.Handler), stateSource (responders.StateSource)
// and adminAPI (admin.Node, one type per noun of the API; operatorAPI
// hands operator-signed commands to consensus).
//
// Trust at the node's edge: the mesh's connection gater (gater.go) lets
// members connect freely and strangers only for a grace to join; one
// verify cache (intel.VerifyCache) is shared by gossip, which verifies
// envelopes on receipt, and consensus, which checks the same envelopes as
// proofs; the store and snapshots may be encrypted at rest (atrest.go).
//
// Data flow inside a node:
//
//	detector ─► onDetection: local decision; outbox: seal, store, publish
//	gossip validator ─► gossipHandler: store, then evaluate
//	corroborator: k distinct roster nodes within W ─► consensus.Propose,
//	    carrying their signed sighting envelopes as the FSM's proof
//	detectors' sub-threshold counts ─► summaryLoop: partial sightings,
//	    sent like sightings; never counted under k; the distributed rule
//	    (k' sites whose capped counts reach a threshold) proposes on them
//	    (distributed.go)
//	indicator report (own or received) ─► promoter: feed policy met ─►
//	    consensus.ProposeFeedBlock, carrying the signed report
//	consensus change ─► reconciler.Trigger ─► responders
//
// It must never hold mesh state of its own: policies live in consensus,
// evidence and local decisions in the store.
package node
