package node

import (
	"fmt"

	"github.com/meshward/meshward/gossip"
)

// startEdges puts the node on the certified topic: its consensus takes
// the topic's messages (an edge applies what a majority of the voters
// certifies; a server checks and relays them) and, while this node is a
// voter, publishes its certificates (and the entries while it leads):
// each voter hands its certificate to the other servers on the servers'
// topic, and the leader publishes one message per batch to the edges,
// the entries with the voters' certificates. Servers and edges:
// consensus/servers.go, consensus/certagg.go.
func (n *Node) startEdges() error {
	d := n.deps
	if d.Gossip == nil || d.Consensus == nil {
		return nil
	}
	ct, err := d.Gossip.JoinCertified(gossip.CertifiedOptions{Handler: d.Consensus.HandleCertified})
	if err != nil {
		return fmt.Errorf("certified topic: %w", err)
	}
	st, err := d.Gossip.JoinServerCerts(d.Consensus.HandleServerCerts)
	if err != nil {
		return fmt.Errorf("servers' topic: %w", err)
	}
	if err := d.Consensus.AttachCertified(ct, st); err != nil {
		return fmt.Errorf("certified topic: %w", err)
	}
	if err := d.Metrics.Register(d.Consensus.EdgeCollector()); err != nil {
		return fmt.Errorf("certified topic metrics: %w", err)
	}
	return nil
}
