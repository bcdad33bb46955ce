package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/gossip"
)

// refusedMetric reads meshward_transport_refused_total{protocol,reason}
// from the node's registry.
func refusedMetric(t *testing.T, n *Node, proto, reason string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshward_transport_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["protocol"] == proto && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestStrangerRefusedByNode: against a real one-node mesh, a stranger's
// raft and sync streams are reset and counted, and once its grace is over
// its connection is closed and a new one refused, all exported in
// meshward_transport_refused_total.
func TestStrangerRefusedByNode(t *testing.T) {
	n := startSingle(t, func(c *Config) { c.Gossip.StrangerGrace = 500 * time.Millisecond })
	waitFor(t, "the node on its own roster", func() bool { return n.deps.Consensus.IsMember(n.deps.ID) })
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossip.NewHost(gossip.HostConfig{Key: sk, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	self, err := peer.Decode(n.deps.ID)
	if err != nil {
		t.Fatal(err)
	}
	target := peer.AddrInfo{ID: self, Addrs: n.deps.Host.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Connect(ctx, target); err != nil {
		t.Fatal(err)
	}
	for _, p := range []protocol.ID{consensus.RaftProtocol, gossip.SyncProtocol} {
		st, err := s.NewStream(ctx, self, p)
		if err != nil {
			continue // refused during negotiation: counted all the same
		}
		_, _ = st.Write([]byte{0})
		if _, err := st.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: the node answered a stranger", p)
		}
		st.Reset()
	}
	waitFor(t, "the raft and sync refusals exported", func() bool {
		return refusedMetric(t, n, string(consensus.RaftProtocol), consensus.RefusedNotInConfiguration) >= 1 &&
			refusedMetric(t, n, string(gossip.SyncProtocol), gossip.RefusedNotMember) >= 1
	})
	waitFor(t, "the stranger's connection closed after its grace", func() bool {
		return refusedMetric(t, n, connectionProtocol, RefusedGraceExpired) >= 1 &&
			s.Network().Connectedness(self) != network.Connected
	})
	_ = s.Connect(ctx, target)
	waitFor(t, "the stranger's new connection refused", func() bool {
		return refusedMetric(t, n, connectionProtocol, RefusedBanned) >= 1
	})
	if n.deps.Host.Network().Connectedness(s.ID()) == network.Connected {
		t.Fatal("a banned stranger is connected")
	}
}
