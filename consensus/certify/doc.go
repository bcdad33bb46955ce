// Package certify lets a member that is not a Raft peer (an edge) apply
// the mesh's committed log: the same entries, in the same order, each
// vouched for by a majority of the voters in force at its index, so that
// one compromised server cannot make an edge apply anything.
//
// Three pieces:
//
//   - The chain (chain.go). Every entry the FSM applies (commands and
//     configuration changes, in index order) extends a hash chain:
//     h_i = SHA-256(ChainDomain || h_prev || prev || index || term || type
//     || len || data), where prev is the index of the previous chain entry.
//     Entries the FSM never sees (no-ops, barriers) are not in the chain;
//     prev makes the holes explicit, so that a missing entry is a gap an
//     edge can name, not a silent mismatch.
//   - Certificates (cert.go). A voter signs Cert{mesh, index, term, h_index}
//     with its node key under CertDomain. A certificate for index k vouches
//     for every chain entry up to k, so voters sign only their latest
//     applied index, as often as they like; an edge counts voter V for
//     index m if V signed some k >= m whose hash the edge recomputes.
//   - The edge (edge.go). It takes entries and certificates from untrusted
//     senders in any order, in bounded buffers, and applies the longest
//     prefix that a majority of the voter set in force certifies. A
//     configuration entry at index c changes the voter set from c+1: the
//     entries up to c must be certified by the old set. Every refusal has a
//     named reason (reasons.go) and is counted (NewCollector exports the
//     counts). A certificate whose signer is a voter in no set the edge
//     knows, while entries before its index are missing, waits (bounded)
//     until they arrive: the configuration naming its signer may be among
//     them.
//
// Transport (message.go, publisher.go, pool.go): a Message carries a
// run of entries and certificates; a Publisher on each voter signs the
// head when it moves (at most once per interval). With aggregation
// (PublisherConfig.Servers) each voter hands its certificate to the
// other servers only, every server keeps the latest of each voter (a
// Pool), and the leader publishes one message per batch to the edges:
// the entries and the voters' certificates that cover them, waiting a
// bounded time for a majority and following up when it arrives. A voter
// whose certificate no majority covered on the edges' topic in time
// publishes it there itself. A catch-up answer (chainsync) carries the
// certificates its server holds. None of this is trusted: an edge checks
// every certificate as before, and the leader can withhold, never forge.
//
// What it assumes: fewer than half of the voters of any set in force are
// compromised, and the edge's anchor (the founder, or the voter set a
// server gave it when it joined) is right.
//
// Snapshots (manifest.go): a Manifest {mesh, index, term, chain hash,
// voters, SHA-256 and size of the snapshot bytes} signed by a majority of
// the voters lets an edge that was away install the state and continue
// from index+1.
package certify
