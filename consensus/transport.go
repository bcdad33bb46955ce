package consensus

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocol IDs.
const (
	// RaftProtocol carries raft's own RPCs (NetworkTransport framing).
	RaftProtocol protocol.ID = "/meshward/raft/1"
	// RPCProtocol carries join requests and forwarded proposals.
	RPCProtocol protocol.ID = "/meshward/raft-rpc/1"
)

// connProtectTag marks connections to raft peers in the connection manager
// so that trimming never cuts the cluster apart.
const connProtectTag = "meshward-raft"

// streamLayer is a raft.StreamLayer over libp2p streams. Raft addresses are
// peer ID strings; dialing needs the peer's addresses in the peerstore.
type streamLayer struct {
	h       host.Host
	ctx     context.Context // cancelled by Close, ending dials in progress
	cancel  context.CancelFunc
	accept  chan network.Stream
	done    chan struct{}
	closeMu sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(h host.Host) *streamLayer {
	ctx, cancel := context.WithCancel(context.Background())
	l := &streamLayer{h: h, ctx: ctx, cancel: cancel, accept: make(chan network.Stream), done: make(chan struct{})}
	h.SetStreamHandler(RaftProtocol, l.handle)
	return l
}

// handle hands an inbound stream to Accept, or resets it once closed.
func (l *streamLayer) handle(s network.Stream) {
	select {
	case l.accept <- s:
	case <-l.done:
		_ = s.Reset()
	}
}

// Accept implements net.Listener.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case s := <-l.accept:
		l.h.ConnManager().Protect(s.Conn().RemotePeer(), connProtectTag)
		return newStreamConn(s), nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener. It is idempotent.
func (l *streamLayer) Close() error {
	l.closeMu.Do(func() {
		l.h.RemoveStreamHandler(RaftProtocol)
		l.cancel()
		close(l.done)
	})
	return nil
}

// Addr implements net.Listener: our peer ID, which raft advertises as our
// ServerAddress.
func (l *streamLayer) Addr() net.Addr { return peerAddr(l.h.ID()) }

// Dial implements raft.StreamLayer. A zero timeout means no deadline of our
// own (libp2p still bounds the dial).
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	id, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %q: %w", address, err)
	}
	ctx, cancel := context.WithCancel(l.ctx)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(l.ctx, timeout)
	}
	defer cancel()
	l.h.ConnManager().Protect(id, connProtectTag)
	s, err := l.h.NewStream(ctx, id, RaftProtocol)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", shortID(string(address)), err)
	}
	return newStreamConn(s), nil
}

// streamConn makes a libp2p stream a net.Conn.
type streamConn struct {
	network.Stream
	local, remote net.Addr
}

func newStreamConn(s network.Stream) *streamConn {
	return &streamConn{
		Stream: s,
		local:  peerAddr(s.Conn().LocalPeer()),
		remote: peerAddr(s.Conn().RemotePeer()),
	}
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

// peerAddr is a net.Addr naming a libp2p peer.
type peerAddr peer.ID

func (a peerAddr) Network() string { return "libp2p" }
func (a peerAddr) String() string  { return peer.ID(a).String() }

// shortID abbreviates a peer ID for logs and errors.
func shortID(id string) string {
	if len(id) > 12 {
		return id[len(id)-8:]
	}
	return id
}
