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
//
// The node meets other packages' interfaces through small adapters:
// gossipHandler (gossip.Handler), stateSource (responders.StateSource)
// and adminAPI (admin.Node, one type per noun of the API).
//
// Data flow inside a node:
//
//	detector ─► onDetection: local decision; outbox: seal, store, publish
//	gossip validator ─► gossipHandler: store, then evaluate
//	corroborator: k distinct roster nodes within W ─► consensus.Propose
//	consensus change ─► reconciler.Trigger ─► responders
//
// It must never hold mesh state of its own: policies live in consensus,
// evidence and local decisions in the store.
package node
