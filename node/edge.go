package node

import (
	"fmt"

	"github.com/meshward/meshward/gossip"
)

// startEdges puts the node on the certified topic: its consensus takes
// the topic's messages (an edge applies what a majority of the voters
// certifies; a server checks and relays them) and, while this node is a
// voter, publishes its certificates on it (and the entries while it
// leads). Servers and edges: consensus/servers.go.
func (n *Node) startEdges() error {
	d := n.deps
	if d.Gossip == nil || d.Consensus == nil {
		return nil
	}
	ct, err := d.Gossip.JoinCertified(gossip.CertifiedOptions{Handler: d.Consensus.HandleCertified})
	if err != nil {
		return fmt.Errorf("certified topic: %w", err)
	}
	if err := d.Consensus.AttachCertified(ct); err != nil {
		return fmt.Errorf("certified topic: %w", err)
	}
	if err := d.Metrics.Register(d.Consensus.EdgeCollector()); err != nil {
		return fmt.Errorf("certified topic metrics: %w", err)
	}
	return nil
}
