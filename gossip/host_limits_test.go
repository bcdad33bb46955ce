package gossip

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/multiformats/go-multiaddr"
)

// TestHostTakesAThousandSites: a host's resource manager admits
// maxConnsInbound inbound connections from distinct peers, far past the
// about 250 that libp2p's memory-scaled defaults allow on this kind of
// machine (a raft server of a thousand-site mesh is dialed by each site
// that joins, catches up or proposes), and refuses the next.
func TestHostTakesAThousandSites(t *testing.T) {
	key, _ := newKey(t)
	h, err := NewHost(HostConfig{Key: key, ListenAddrs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rm := h.Network().ResourceManager()
	var scopes []network.ConnManagementScope
	defer func() {
		for _, s := range scopes {
			s.Done()
		}
	}()
	open := func(i int) error {
		a := multiaddr.StringCast(fmt.Sprintf("/ip4/127.0.%d.%d/tcp/4001", i/250, i%250+1))
		s, err := rm.OpenConnection(network.DirInbound, true, a)
		if err != nil {
			return err
		}
		scopes = append(scopes, s)
		if err := s.SetPeer(test.RandPeerIDFatal(t)); err != nil {
			return fmt.Errorf("attach to a peer: %w", err)
		}
		return nil
	}
	for i := range maxConnsInbound {
		if err := open(i); err != nil {
			t.Fatalf("inbound connection %d refused: %v", i+1, err)
		}
	}
	if err := open(maxConnsInbound); err == nil {
		t.Fatalf("inbound connection %d admitted past the limit", maxConnsInbound+1)
	}
}
