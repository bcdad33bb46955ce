package testnet

import (
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// gater is one node's connection gater: it refuses the peers on the other
// side of a partition, dialling and being dialled alike.
type gater struct {
	mu      sync.RWMutex
	blocked map[peer.ID]bool
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func newGater() *gater { return &gater{blocked: make(map[peer.ID]bool)} }

func (g *gater) set(blocked map[peer.ID]bool) {
	g.mu.Lock()
	g.blocked = blocked
	g.mu.Unlock()
}

func (g *gater) allowed(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return !g.blocked[p]
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                        { return g.allowed(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ multiaddr.Multiaddr) bool { return g.allowed(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool             { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p)
}
func (g *gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return g.allowed(c.RemotePeer()), 0
}

// Partition splits the mesh into the given groups of node indices: nodes
// in different groups refuse each other's connections, and the live ones
// are closed. A node in no group is cut off from every other node. Heal
// ends the partition.
func (m *Mesh) Partition(groups ...[]int) error {
	side := make(map[int]int)
	for g, members := range groups {
		for _, i := range members {
			if i < 0 || i >= len(m.Nodes) {
				return fmt.Errorf("testnet: no node %d", i)
			}
			side[i] = g + 1
		}
	}
	ids := make([]peer.ID, len(m.Nodes))
	for i, n := range m.Nodes {
		id, err := peer.Decode(n.ID())
		if err != nil {
			return fmt.Errorf("testnet: node %d: %w", i, err)
		}
		ids[i] = id
	}
	for i := range m.Nodes {
		blocked := make(map[peer.ID]bool)
		for j := range m.Nodes {
			if i != j && (side[i] == 0 || side[i] != side[j]) {
				blocked[ids[j]] = true
			}
		}
		m.gaters[i].set(blocked)
		for p := range blocked {
			_ = m.Nodes[i].Host().Network().ClosePeer(p)
		}
	}
	return nil
}

// Heal ends a partition: every node admits every other again. The nodes
// reconnect through their bootstrap peers and peer books.
func (m *Mesh) Heal() {
	for _, g := range m.gaters {
		g.set(make(map[peer.ID]bool))
	}
}
