// Package consensus is Meshward's agreement layer: hashicorp/raft running
// over libp2p streams, with a finite state machine that holds what the whole
// mesh agrees on — the roster of admitted nodes, the mesh-wide policies and
// the protected ranges.
//
// It owns:
//
//   - the raft StreamLayer over libp2p (protocol /meshward/raft/1), so raft
//     peers are named by their libp2p peer ID alone;
//   - the FSM and its command encoding (first byte = command type, then JSON);
//   - bootstrapping the first node, admitting joiners that present the join
//     token, and keeping the voter set bounded (MaxVoters voters, the rest
//     non-voters);
//   - forwarding joins and proposals from any node to the leader (protocol
//     /meshward/raft-rpc/1).
//
// It must never:
//
//   - read the clock inside the FSM: expiry is computed from the timestamp the
//     proposer wrote into the command (Command.At);
//   - depend on map iteration order for anything the FSM returns or stores;
//   - persist anything itself: the raft log, stable and snapshot stores are
//     handed in by the caller (store/ in production, in-memory in tests);
//   - act on the firewall or any other effect: it only notifies (Changes) and
//     answers queries, and the enforcement loop reconciles.
package consensus
