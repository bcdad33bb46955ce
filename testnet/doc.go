// Package testnet runs a whole Meshward mesh on one machine: N real nodes
// (real libp2p hosts on loopback sockets, real Raft, real Badger on disk in
// temporary directories), attack injection into their logs, partitions
// (each node's connection gater refuses the other side: Partition, Heal),
// and measurement of how an indicator travels from the first detection to
// enforcement on every node. The tests, the benchmarks and the
// `meshward testnet` command all use it.
//
// In namespace mode (netns*.go; Linux, root) every node is a `meshward
// agent` process in a network namespace of its own, enforcing with
// nftables there: a Lab makes the namespaces (a hub namespace's bridge, a
// veth each) and their links, and never touches the host's namespace.
package testnet
