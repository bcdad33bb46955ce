package gossip

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The notifee connects to what mDNS reports. Multicast itself depends on
// the machine's interfaces, so the test feeds the notifee directly.
func TestMDNSConnectsToFoundPeers(t *testing.T) {
	a, _ := newTestHost(t)
	b, _ := newTestHost(t)
	m, err := StartMDNS(a, "_meshward-test._udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	m.HandlePeerFound(peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}) // itself: ignored
	m.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
	deadline := time.Now().Add(20 * time.Second)
	for a.Network().Connectedness(b.ID()) != network.Connected {
		if time.Now().After(deadline) {
			t.Fatal("did not connect to the peer mDNS found")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	m.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}) // after Close: no goroutine, no panic
}
