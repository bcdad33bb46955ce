// Package testnet runs a whole Meshward mesh on one machine: N real nodes
// (real libp2p hosts on loopback sockets, real Raft, real Badger on disk in
// temporary directories), attack injection into their logs, partitions
// (each node's connection gater refuses the other side: Partition, Heal),
// and measurement of how an indicator travels from the first detection to
// enforcement on every node. The tests, the benchmarks and the
// `meshward testnet` command all use it.
package testnet
