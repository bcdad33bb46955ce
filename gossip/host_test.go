package gossip

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestNewHostTransports(t *testing.T) {
	sk, _ := newKey(t)
	if _, err := NewHost(HostConfig{}); err == nil {
		t.Fatal("host without a key accepted")
	}
	h, err := NewHost(HostConfig{Key: sk, ListenAddrs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var tcp, quic bool
	for _, a := range h.Addrs() {
		s := a.String()
		tcp = tcp || strings.Contains(s, "/tcp/")
		quic = quic || strings.Contains(s, "/quic-v1")
	}
	if !tcp || !quic {
		t.Fatalf("want TCP and QUIC listeners, got %v", h.Addrs())
	}
	// Only TCP and QUIC are built: a websocket address has no transport.
	sk2, _ := newKey(t)
	if h2, err := NewHost(HostConfig{Key: sk2, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0/ws"}}); err == nil {
		h2.Close()
		t.Fatal("websocket listen address accepted; the default transport set is still in use")
	}
}

func TestBootstrapperRejectsBadAddress(t *testing.T) {
	h, _ := newTestHost(t)
	for _, bad := range []string{"not-a-multiaddr", "/ip4/127.0.0.1/tcp/1"} {
		_, err := NewBootstrapper(h, []string{bad}, nil)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("address %q: err %v, want an error naming it", bad, err)
		}
	}
}

func TestBootstrapperConnectsAndReconnects(t *testing.T) {
	a, _ := newTestHost(t)
	b, _ := newTestHost(t)
	// The list holds a itself as well: it must be skipped.
	bs, err := NewBootstrapper(a, []string{p2pAddr(b), p2pAddr(a)}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := bs.Peers(); len(got) != 1 || got[0].ID != b.ID() {
		t.Fatalf("bootstrap peers %v, want only %s", got, b.ID())
	}
	bs.minBackoff, bs.maxBackoff = 20*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bs.Start(ctx)
	bs.Start(ctx) // no-op
	connected := func() bool { return a.Network().Connectedness(b.ID()) == network.Connected }
	waitFor(t, 10*time.Second, "initial connection", connected)
	if !a.ConnManager().IsProtected(b.ID(), bootstrapTag) {
		t.Fatal("bootstrap peer is not protected from the connection manager")
	}
	for i := range 3 {
		old := map[string]bool{}
		for _, c := range a.Network().ConnsToPeer(b.ID()) {
			old[c.ID()] = true
		}
		// b may register the connection a moment after a does; closing
		// before then would close nothing.
		waitFor(t, 5*time.Second, "b to see the connection", func() bool {
			return b.Network().Connectedness(a.ID()) == network.Connected
		})
		closer, other := b, a // drop from the remote side, then the local one
		if i%2 == 1 {
			closer, other = a, b
		}
		if err := closer.Network().ClosePeer(other.ID()); err != nil {
			t.Fatal(err)
		}
		// The redial may be quicker than any poll, so look for a new
		// connection rather than for the gap.
		waitFor(t, 10*time.Second, "reconnection", func() bool {
			for _, c := range a.Network().ConnsToPeer(b.ID()) {
				if !old[c.ID()] && !c.IsClosed() {
					return true
				}
			}
			return false
		})
		t.Logf("reconnected after drop %d", i+1)
	}
	if err := bs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bs.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if a.ConnManager().IsProtected(b.ID(), bootstrapTag) {
		t.Fatal("protection left behind after Close")
	}
}

func TestBootstrapperRetriesUnreachablePeer(t *testing.T) {
	a, _ := newTestHost(t)
	b, _ := newTestHost(t)
	addr := p2pAddr(b)
	bID := b.ID()
	// Take b down, start bootstrapping to it, then bring a host with b's key
	// up on the same port: the bootstrapper must keep trying until it
	// connects.
	sk := b.Peerstore().PrivKey(bID)
	listen := []string{b.Addrs()[0].String()}
	b.Close()
	bs, err := NewBootstrapper(a, []string{addr}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	bs.minBackoff, bs.maxBackoff, bs.dialTimeout = 20*time.Millisecond, 100*time.Millisecond, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bs.Start(ctx)
	defer bs.Close()
	time.Sleep(150 * time.Millisecond) // let a few dials fail; not an assertion
	b2, err := NewHost(HostConfig{Key: sk, ListenAddrs: listen})
	if err != nil {
		t.Skipf("could not rebind %s: %v", listen[0], err)
	}
	defer b2.Close()
	waitFor(t, 10*time.Second, "connection to the restarted peer", func() bool {
		return a.Network().Connectedness(bID) == network.Connected
	})
}

// TestNewHostMuxerIntervals: hosts with yamux's keep-alive and round-trip
// intervals set connect and open streams (the muxer replaced is still
// yamux, the one both ends speak); a negative interval is refused, named.
func TestNewHostMuxerIntervals(t *testing.T) {
	sk, _ := newKey(t)
	if _, err := NewHost(HostConfig{Key: sk, ListenAddrs: loopback, MuxerKeepAlive: -time.Second}); err == nil || !strings.Contains(err.Error(), "keep-alive -1s") {
		t.Fatalf("negative keep-alive: %v, want an error naming it", err)
	}
	var hosts []interface {
		Close() error
	}
	defer func() {
		for _, h := range hosts {
			h.Close()
		}
	}()
	a, err := NewHost(HostConfig{Key: sk, ListenAddrs: loopback, MuxerKeepAlive: 2 * time.Minute, MuxerMeasureRTT: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	hosts = append(hosts, a)
	sk2, _ := newKey(t)
	b, err := NewHost(HostConfig{Key: sk2, ListenAddrs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	hosts = append(hosts, b)
	const proto = "/meshward/test-echo/1"
	b.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		buf := make([]byte, 4)
		if _, err := s.Read(buf); err == nil {
			_, _ = s.Write(buf)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := a.NewStream(ctx, b.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}
