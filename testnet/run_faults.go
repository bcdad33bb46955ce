package testnet

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/node"
)

// running counts the nodes not stopped by Kill.
func (m *Mesh) running() int {
	n := 0
	for _, d := range m.down {
		if !d {
			n++
		}
	}
	return n
}

// Running reports whether node i runs (it was not killed, or was
// restarted since).
func (m *Mesh) Running(i int) bool { return i >= 0 && i < len(m.Nodes) && !m.down[i] }

// Leader returns the index of the node every running node it asks
// names as the Raft leader, or -1 when there is none or it is not
// running.
func (m *Mesh) Leader() int {
	for i, n := range m.Nodes {
		if m.down[i] {
			continue
		}
		id := n.Consensus().Leader()
		for j, o := range m.Nodes {
			if o.ID() == id && !m.down[j] {
				return j
			}
		}
	}
	return -1
}

// Kill stops node i abruptly, as far as one process allows: its
// connection gater first refuses every peer and its connections are cut
// (the others see it vanish mid-stream, with no Raft leave and no
// goodbye), then the node is closed so that its data directory can be
// opened again by Restart. Unlike a SIGKILL, the store is closed cleanly:
// what a crash loses of unsynced writes is the store's tests' business
// (store powerloss tests, cmd/meshward TestAgentKilledAndRestarted).
func (m *Mesh) Kill(i int) error {
	if !m.Running(i) {
		return fmt.Errorf("testnet: node %d is not running", i)
	}
	n := m.Nodes[i]
	all := make(map[peer.ID]bool)
	for j, o := range m.Nodes {
		if j == i {
			continue
		}
		if id, err := peer.Decode(o.ID()); err == nil {
			all[id] = true
		}
	}
	m.gaters[i].set(all)
	for p := range all {
		_ = n.Host().Network().ClosePeer(p)
	}
	m.down[i] = true
	if err := m.closeNode(i); err != nil {
		return fmt.Errorf("testnet: kill node %d: %w", i, err)
	}
	return nil
}

// Restart starts node i again from its data directory (its identity,
// store and Raft state), after Kill. It listens on new ports and dials
// every running node; the mesh knows it already, so it rejoins without
// a token. Restart returns once the node runs, not once it caught up.
func (m *Mesh) Restart(ctx context.Context, i int) error {
	if i < 0 || i >= len(m.Nodes) || !m.down[i] {
		return fmt.Errorf("testnet: node %d was not killed", i)
	}
	cfg := m.cfgs[i]
	cfg.Peers = nil
	for j, o := range m.Nodes {
		if j != i && !m.down[j] {
			cfg.Peers = append(cfg.Peers, o.Addrs()[0])
		}
	}
	if len(cfg.Consensus.Join) > 0 && len(cfg.Peers) > 0 {
		cfg.Consensus.Join = []string{cfg.Peers[0]}
	}
	g := newGater()
	n, st, err := m.startNode(ctx, i, cfg, g)
	if err != nil {
		return fmt.Errorf("testnet: restart node %d: %w", i, err)
	}
	m.Nodes[i], m.stores[i], m.gaters[i], m.down[i] = n, st, g, false
	// The others may have stopped dialling its old addresses: they admit
	// it again (a partition in force is not undone).
	return nil
}

// skewClock is a node's clock, ahead or behind the real one by an offset
// a scenario may change while the node runs.
type skewClock struct{ offset atomic.Int64 }

func (c *skewClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *skewClock) set(d time.Duration) {
	c.offset.Store(int64(d))
}

// unskew brings the times of a timeline the node wrote with its clock
// back to the real clock (as they are now offset).
func (c *skewClock) unskew(tl node.Timeline) node.Timeline {
	d := time.Duration(c.offset.Load())
	for _, t := range []*time.Time{&tl.Detected, &tl.Received, &tl.Committed, &tl.Enforced} {
		if !t.IsZero() {
			*t = t.Add(-d)
		}
	}
	return tl
}

// faultable is what kill and restart steps need of a mesh, in-process
// (Mesh) or in namespaces (NetnsMesh).
type faultable interface {
	Kill(i int) error
	Restart(ctx context.Context, i int) error
}

// killNodes kills nodes in turn and returns killed with them added.
func killNodes(m faultable, nodes, killed []int) ([]int, error) {
	for _, n := range nodes {
		if err := m.Kill(n); err != nil {
			return killed, err
		}
		killed = append(killed, n)
	}
	return killed, nil
}

// restartNodes restarts nodes in turn and returns killed without them.
func restartNodes(ctx context.Context, m faultable, nodes, killed []int) ([]int, error) {
	for _, n := range nodes {
		if err := m.Restart(ctx, n); err != nil {
			return killed, err
		}
		killed = slices.DeleteFunc(killed, func(k int) bool { return k == n })
	}
	return killed, nil
}
