// Package node is the composition root of a Meshward node. It builds the
// subsystems from a Config (identity, store, libp2p host, gossip,
// consensus, detectors, responders), wires them together, and holds the
// one piece of logic that belongs to no subsystem: when local and gossiped
// evidence becomes a mesh-wide proposal (the corroboration rule).
//
// Data flow inside a node:
//
//	detector ─► onDetection: local decision, seal, store, publish
//	gossip validator ─► HandleEnvelope: store, then evaluate
//	evaluate: k distinct roster nodes within W ─► consensus.Propose
//	consensus change ─► reconciler.Trigger ─► responders
//
// It must never hold mesh state of its own: policies live in consensus,
// evidence and local decisions in the store.
package node
