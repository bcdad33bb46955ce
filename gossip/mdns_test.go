package gossip

import (
	"context"
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMDNS(a, "_meshward-test._udp", nil)
	m.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}) // before Start: ignored
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m.HandlePeerFound(peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}) // itself: ignored
	m.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()})
	waitFor(t, 20*time.Second, "a connection to the peer mDNS found", func() bool {
		return a.Network().Connectedness(b.ID()) == network.Connected
	})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	m.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}) // after Close: no goroutine, no panic
}

// TestMDNSClosedStaysClosed: Close after Start's context ended returns at
// once, and a Start after Close starts nothing.
func TestMDNSClosedStaysClosed(t *testing.T) {
	a, _ := newTestHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMDNS(a, "_meshward-test._udp", nil)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.routines.Go(func(context.Context) {}) {
		t.Error("a connection attempt started after Close")
	}
}
