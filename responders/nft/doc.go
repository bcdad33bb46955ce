// Package nft is the nftables backend of the responders: it enforces
// address, IPv6 and CIDR blocks in a table of its own, through netlink.
//
// The table (default "inet meshward") holds four sets, "v4" and "v6" for
// single addresses and the interval sets "v4net" and "v6net" for networks,
// all with per-element timeouts set from the policy's expiry (elements of
// policies that never expire get none), and two base chains, "input" and
// "forward", each dropping and counting packets whose source address is in
// one of the sets.
//
// The same table holds the mesh's segmentation (zones, flows,
// quarantines) compiled for the host: two more base chains, "seg-input"
// and "seg-forward" at priority filter+10, and the sets they name
// ("seg-z4-<zone>", "seg-q4", "seg-m4", ...), replaced whole in one
// transaction when the compiled program's hash changes (segment.go has
// the layout; SegmentDrift compares the kernel with it). A drop in any
// base chain is final, so a blocked source stays dropped whatever a flow
// allows.
//
// Nothing outside that table is ever read or written: Teardown deletes the
// table and only it.
//
// The backend is the only writer of its table, so it keeps a view of what
// the sets hold and answers Current and Compare from it. Reading a set of
// 100,000 elements back from the kernel takes seconds (the kernel
// restarts its walk for every dump chunk), so the view is checked cheaply
// on every call: the kernel's ruleset generation, which every committed
// change to any table advances, must be the one recorded after the
// backend's own last change. If another process changed the ruleset
// (deleted the table, flushed a set, deleted an element by hand, or only
// touched another table), or a change of the backend's own failed, the
// next call repairs the structure (table, sets, chains, rules) and reads
// the sets back in full, so the reconcile pass restores what is missing.
// There is no periodic full read: nothing changes the sets without a
// transaction but the kernel's own element expiries, which the view
// mirrors. WithFullReadEvery adds one for whoever wants it.
//
// The view also keeps a digest of its keys (responders.Digest), change by
// change, so that the reconciler's full pass over a million entries costs
// the generation check and two words compared; only a comparison the
// reconciler marks thorough (after a failed change) or a digest that
// differs looks every entry up.
//
// Element changes are encoded by the backend itself into one buffer per
// batch (the nftables library builds several allocations per element)
// and sent on its own netlink socket, whose send buffer it enlarges: a
// batch is one sendmsg and one transaction, of up to WithBatchSize
// elements (default 65,536). Batches are pipelined: while the kernel
// takes one, the next is encoded and the one before recorded in the view.
// Networks nest or are disjoint: the kernel holds the outermost, the
// others wait nested, and a change looks up only the prefix lengths in
// use and the range of the networks it covers (nets.go).
//
// Elements expire in the kernel by themselves; the view drops them at the
// same time. A policy whose expiry is extended must reach the kernel
// element too: Apply and Refresh replace an element whose expiry is
// earlier than the policy's by deleting and re-adding it in one
// transaction, so the address is never unblocked in between.
package nft
