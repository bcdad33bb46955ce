package testnet

import "strconv"

// Open files a mesh costs, as measured on a 60-node mesh under the sim
// profile in one process (1,499 open files: 426 files, mostly Badger's,
// and 1,068 sockets, 888 of them connections' ends): about 12 a node
// besides its connections (store files, TCP listener, QUIC socket), and
// one for each end of a connection a node holds.
const (
	fdsPerNode    = 12
	fdsPerProcess = 64 // standard files, the runtime's, the control pipes
	// fdShare is the share of the open-files limit the estimate may
	// reach: the estimate leaves out the connections GossipSub, Raft and
	// anti-entropy open beyond the dial plan.
	fdShare = 0.6
)

// nodeConns returns, for each node of a mesh of nodes under prof, how
// many connections it holds after the dial plan of Start: those it
// dialed and those dialed to it.
func nodeConns(nodes int, prof profile) []int {
	conns := make([]int, nodes)
	idx := make([]string, 0, nodes)
	for j := range nodes {
		// The plan picks among the addresses of the nodes before j:
		// stand in their indexes.
		for _, d := range prof.dialPeers(idx) {
			i, _ := strconv.Atoi(d)
			conns[i]++
			conns[j]++
		}
		idx = append(idx, strconv.Itoa(j))
	}
	return conns
}

// fdsEstimate is the open files each process needs when counts share
// the nodes of a mesh between processes, in order, conns being each
// node's connections (nodeConns).
func fdsEstimate(counts, conns []int) []int {
	fds := make([]int, len(counts))
	i := 0
	for k, c := range counts {
		fds[k] = fdsPerProcess
		for range c {
			fds[k] += fdsPerNode + conns[i]
			i++
		}
	}
	return fds
}

// ChooseProcesses returns the fewest processes that hold a mesh of nodes
// under profile (empty: as Start chooses it) so that by the estimate no
// process needs more than 60% of softLimit open files, and that
// estimate for the busiest process. When even one node a process does
// not fit, it returns one process a node.
func ChooseProcesses(nodes int, profile string, softLimit uint64) (processes, fds int) {
	if nodes < 1 {
		return 1, fdsPerProcess
	}
	if profile == "" && nodes > SimProfileAbove {
		profile = ProfileSim
	}
	prof, err := profileFor(profile)
	if err != nil {
		prof, _ = profileFor(ProfileSim)
	}
	budget := int(float64(softLimit) * fdShare)
	conns := nodeConns(nodes, prof)
	for p := 1; p <= nodes; p++ {
		fds = 0
		for _, f := range fdsEstimate(splitNodes(nodes, p), conns) {
			fds = max(fds, f)
		}
		if fds <= budget {
			return p, fds
		}
	}
	return nodes, fds
}
