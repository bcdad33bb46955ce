// Package consensus is Meshward's agreement layer: hashicorp/raft running
// over libp2p streams, with a finite state machine that holds what the whole
// mesh agrees on — the roster of admitted nodes, the mesh-wide policies and
// the protected ranges.
//
// It owns:
//
//   - the raft StreamLayer over libp2p (protocol /meshward/raft/1), so raft
//     peers are named by their libp2p peer ID alone;
//   - the FSM and its command encoding (first byte = command type, then JSON;
//     automatic blocks as proven-block entries: the policy's JSON and the
//     signed sighting envelopes as raw length-prefixed bytes, proof_command.go);
//   - bootstrapping the first node, admitting joiners that prove they hold
//     an operator-issued join token (join.go), and keeping the voter set
//     bounded (MaxVoters voters, the rest non-voters);
//   - forwarding joins, proposals, removals and read-index requests from any
//     node to the leader (protocol /meshward/raft-rpc/1).
//
// Configuration and lifecycle. Config is both the node's YAML section
// "consensus" (the fields with yaml tags: DefaultConfig, Validate) and what
// New needs at run time (the node's identity, logger and timing, which
// YAML cannot set). New(ctx) starts raft and the participant's loops on
// ctx, never on a context of its own; a start whose ctx has ended stops
// and returns its error. Close shuts raft down and waits for every
// goroutine: the loops and RPC handlers (one routine.Group) and the raft
// transport's connections, which the stream layer resets and counts.
//
// Files: consensus.go (lifecycle, loops, local reads), propose.go and
// join.go (the write paths, forwarded to the leader; forward.go batches
// a follower's concurrent proposals into propose_batch requests), rpc.go
// (the raft-rpc protocol), transport.go (the StreamLayer), logcache.go
// (the newest log entries in memory, in front of the durable log store),
// membership.go, read.go, fsm.go (Apply, ApplyBatch, dispatch),
// policystore.go (the held policies: compact records without pointers,
// B-trees by ID and by expiry), policyindex.go (prefix and domain indexes
// for the vetoes), changes.go and policies.go (the change feed and the
// query API: pages, look-ups, counts), fsm_query.go, fsm_snapshot.go and
// snapshot_codec.go (the binary snapshot stream), and command.go.
//
// Volume. Nothing on the commit path reads every held policy: Apply finds
// the vetoes (protected ranges, member addresses, allows) and the blocks
// an allow drops through the indexes, prune visits only what expired, and
// readers follow the change feed (PolicyChanges) and read pages
// (PolicyPage) instead of copying the state. A commit costs the same with
// 0 or 1,000,000 policies held (BenchmarkFSMApplyOperatorBlock).
//
// Voter management (membership.go). Joiners enter the configuration as
// non-voters. The leader watches its followers through raft's heartbeat
// observations and, every MembershipInterval, makes at most one change: it
// demotes a voter that has failed heartbeats for DeadVoterTimeout when a
// healthy non-voter can replace it (a dead voter without a replacement keeps
// its vote: shrinking the set would not add fault tolerance); otherwise it
// promotes the longest-admitted non-voter that has been healthy for
// PromoteAfter while voters < MaxVoters, growing only towards an odd count
// (1, 3, 5); and it mirrors suffrage into the roster's Voter flag. Demoted
// nodes stay members and can be promoted again once healthy. Health is the
// leader's view only; Members reports HealthUnknown for peers elsewhere.
// Removing a member is an operator command (remove_member); Leave
// (graceful shutdown) commits a leave signed with the node's own key. The
// FSM records both as departures, and the leader removes departed servers
// from the configuration, handing leadership over first when it is the
// one departing; the last voter cannot leave (ErrLastVoter).
//
// Servers and edges (servers.go, edge.go, edge_snapshot.go). MaxVoters
// voters and Standbys non-voters are the raft servers; a joiner that finds
// every server place taken is admitted as an edge: on the roster, in no
// raft configuration, its FSM driven by a certify.Edge. Voters hand
// certificates of their chain head to the other servers on the servers'
// topic (HandleServerCerts, certagg.go), and the leader publishes the
// entries with the voters' certificates on the certified GossipSub topic,
// one message per batch (AttachCertified); HandleCertified feeds the
// edge, chainsync fills its gaps from a voter, and an edge that has
// nothing yet or fell behind the kept entries installs a snapshot whose
// manifest a majority of the voters signed (SnapshotProtocol). An edge
// persists what it applied as a raft snapshot and resumes from it,
// proposes and reads through a server, and, when servers are lost, is made
// a standby by the leader: raft then drives its FSM, which skips the
// entries it holds already (certChain.skip).
//
// Segmentation (segment.go, proof_quarantine.go). The FSM also holds the
// mesh's zones, the flows between them and the quarantined hosts, set by
// operator-signed commands (set_zone, remove_zone, set_flow, remove_flow:
// admin; quarantine, release: responder) and by automatic quarantines
// (CmdQuarantine) proven by signed sightings of a rule the host's zone
// allows. A deny flow or default-deny zone that would cut the mesh's own
// traffic, and a quarantine of a member's, protected or local address,
// are refused, each under its reason. Segmentation(now) reads the state
// and SegmentationChanged() wakes its readers.
//
// Reads. Policies, Protected and Roster answer from local state at once,
// which is what enforcement needs (a minority keeps enforcing the last
// committed policies). ReadPolicies and WaitConsistent are linearizable by
// the read-index protocol: the leader commits a barrier and returns the index
// of the last command it applied; the caller waits until its own FSM has
// applied that far.
//
// The transport boundary (gate.go, transport.go). hashicorp/raft does not
// ask who sends an RPC, so the stream layer does: an inbound
// /meshward/raft/1 stream is accepted only from a server in the current
// Raft configuration (a cached set, refreshed from raft without blocking
// it); a node still joining accepts only the member it joined through and
// the servers the join response names. A peer that leaves the
// configuration has its open streams reset. Refusals are counted in
// meshward_transport_refused_total{protocol,reason} (TransportRefusals);
// a non-member's raft-rpc request other than a first-hand join is refused
// and counted there too.
//
// Trust (trust.go, proof.go, operator.go, roster.go). The FSM is the last
// line: what it applies is provable from the entry alone. The founding
// node's first command (CmdInit) sets the mesh ID, the first operator
// keys (Config.BootstrapOperators) and the rules (k, W, the automatic
// block TTL cap, the floors). An automatic block (CmdPutPolicy) carries
// the signed sighting envelopes that justify it: every one must verify,
// name the block's indicator, be signed by a roster member, be sent
// within W of the entry's time; at least k distinct signers. Operator
// commands (CmdOperator) carry an operator's signature over a body bound
// to this mesh, a time window and a nonce never seen before; the key's
// role bounds what it may sign (responder: block, allow, revoke within
// 7 days; admin: everything, wide included). Node keys cannot be
// operators. The old unsigned types (revoke, protect, unprotect, remove
// member) are refused. Every refusal, in Apply and on the proposing path
// (which runs Apply's checks first), is a *RefusalError counted in
// meshward_consensus_refused_total{command,reason} (RefusalCounts). A
// refused entry changes nothing, not even the FSM's clock.
//
// Site trust and the risk threshold (sitetrust.go). Each member's trust
// (0..TrustMax) falls by TrustPenalty for every signer of an automatic
// block (its evidence) that an operator's allow or revoke overturns, and
// recovers by TrustRecoveryPerDay of FSM clock; it is in snapshots and
// read by SiteTrust. With Rules.MinRisk above 0 (set_min_risk), an
// automatic block's proof must score at least MinRisk by intel/risk from
// the entry alone: the proofs' severities, confidences, techniques and
// last-seen times, the signers' trust at that index, the entry's time as
// now. ATT&CK tactics, reports and CVE/KEV are not in the entry: neutral
// or zero here, they count only in the score nodes display. Refused as
// low_risk.
//
// Feed blocks (feedpolicy.go). Feed entries are signed indicator
// reports and block nothing until an operator-signed feed policy
// (set_feed_policy, remove_feed_policy; at most intel.MaxFeedPolicies)
// promotes them. A feed block (CmdFeedBlock) carries the report's
// envelope as signed and the policy's name; Apply checks that the policy
// exists and is enabled, that the envelope verifies and its signer is a
// member and a permitted publisher (named, or a voter), that the report's
// source, confidence, type and validity meet the policy, that the block
// is of the report's indicator and lasts no longer than the policy and
// the report allow, then the floors, the warninglist (intel/warninglist's
// built-in list and the operators' warninglist_add entries, held here and
// in snapshots), protected ranges and allows. Refusals are counted under
// command "feed-block".
//
// Admission (join.go, roster.go). The founding node is the first member,
// named in CmdInit. Every other node joins with the secret of a join
// token an operator created (create_join_token; the FSM keeps the
// token's public key, uses, expiry and creator): it asks a member for the
// mesh ID (join_info), signs its node ID and the mesh ID with the key
// derived from the secret, and sends its join; the member serving it
// first-hand records the addresses it observed the joiner connecting
// from (the connection's remote IPs, never the joiner's claims) and
// forwards it to the leader, which writes a CmdAdmit carrying the proof
// and the observed addresses, and once it is applied adds the node to the
// configuration as a non-voter. Apply admits only with a proof that
// verifies for that node and this mesh, a token known, unexpired at the
// entry's time and with uses left, and observed host prefixes none of
// which (once protected) lies under an active block; it spends one use
// and records the token and its operator on the member. A member is
// never admitted twice (already_member); a CmdAdmit without a proof may
// only flip an existing member's voter flag (the leader mirrors raft's
// suffrage). Join attempts are rate-limited per remote peer on the member
// serving them; failures are counted in
// meshward_transport_refused_total{protocol="/meshward/raft-rpc/1",
// reason="join_<reason>"}.
//
// Mesh addresses are protected automatically, in Apply: the addresses a
// member was observed connecting from when it joined (Member.Observed; for
// the founder, its own interface addresses) become host prefixes that no
// block may cover. Its self-reported listen addresses (Member.Addrs) serve
// connectivity only. They are derived from the roster on every admit,
// removal and restore rather than written as CmdProtect entries, so they
// follow the roster exactly (a removed node's address becomes blockable
// again) and cannot be unprotected by hand while the member stands.
// Loopback and link-local observed addresses are recorded but never
// protected: they name no mesh host from elsewhere, loopback stays
// blockable for tests and local testnets, and so a loopback admission can
// never lift a block. Protected returns the explicit ranges and the
// member prefixes together.
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
