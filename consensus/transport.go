package consensus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
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

// closeWait bounds how long Close waits for raft's transport to let go of
// the connections the layer handed it.
const closeWait = 5 * time.Second

// streamLayer is a raft.StreamLayer over libp2p streams. Raft addresses are
// peer ID strings; dialing needs the peer's addresses in the peerstore.
//
// It owns every stream it hands raft: Close resets them all, and
// closeAndWait then waits until raft's transport has closed each accepted
// one (its connection handlers return on the reset) and has seen Accept
// fail (its listener returns), so that no goroutine of the transport
// outlives the participant.
type streamLayer struct {
	h      host.Host
	log    *slog.Logger
	ctx    context.Context // ends dials in progress; cancelled by Close
	cancel context.CancelFunc
	accept chan network.Stream
	done   chan struct{}
	// gate decides who may open a raft stream (gate.go); nil admits all.
	gate *raftGate

	mu        sync.Mutex
	closed    bool
	conns     map[*streamConn]struct{} // handed to raft and not closed yet
	accepted  sync.WaitGroup           // accepted conns not closed yet
	listening chan struct{}            // closed when Accept has failed after Close
	closeOnce sync.Once
	quietOnce sync.Once
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// newStreamLayer serves RaftProtocol on h until Close, to the peers gate
// admits; ctx bounds its dials.
func newStreamLayer(ctx context.Context, h host.Host, gate *raftGate, log *slog.Logger) *streamLayer {
	ctx, cancel := context.WithCancel(ctx)
	l := &streamLayer{
		h: h, log: log, ctx: ctx, cancel: cancel, gate: gate,
		accept:    make(chan network.Stream),
		done:      make(chan struct{}),
		conns:     map[*streamConn]struct{}{},
		listening: make(chan struct{}),
	}
	h.SetStreamHandler(RaftProtocol, l.handle)
	return l
}

// handle hands an inbound stream to Accept, or resets it once closed.
// A peer the gate refuses has its stream reset before raft reads a byte,
// and the refusal is counted.
func (l *streamLayer) handle(s network.Stream) {
	if l.gate != nil {
		p := s.Conn().RemotePeer()
		if reason := l.gate.admit(p); reason != "" {
			l.gate.refused.Refuse(string(RaftProtocol), reason, p, nil)
			_ = s.Reset()
			return
		}
	}
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
		c, ok := l.own(s, true)
		if !ok {
			l.quiet()
			return nil, net.ErrClosed
		}
		l.h.ConnManager().Protect(s.Conn().RemotePeer(), connProtectTag)
		return c, nil
	case <-l.done:
		l.quiet()
		return nil, net.ErrClosed
	}
}

// quiet records that Accept has failed after Close: raft's listener stops
// on the first failure once the transport is shut down.
func (l *streamLayer) quiet() { l.quietOnce.Do(func() { close(l.listening) }) }

// own wraps s as a connection the layer tracks, or resets it if the layer
// is closed.
func (l *streamLayer) own(s network.Stream, inbound bool) (*streamConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = s.Reset()
		return nil, false
	}
	c := newStreamConn(s)
	c.layer, c.inbound = l, inbound
	l.conns[c] = struct{}{}
	if inbound {
		l.accepted.Add(1)
	}
	return c, true
}

// resetInbound resets the accepted connections whose remote peer may no
// longer keep them, counting each.
func (l *streamLayer) resetInbound(keep func(peer.ID) bool) {
	l.mu.Lock()
	var drop []*streamConn
	for c := range l.conns {
		if c.inbound && !keep(c.Conn().RemotePeer()) && c.dropped.CompareAndSwap(false, true) {
			drop = append(drop, c)
		}
	}
	l.mu.Unlock()
	for _, c := range drop {
		_ = c.Reset()
		if l.gate != nil {
			l.gate.refused.Refuse(string(RaftProtocol), RefusedLeftConfiguration, c.Conn().RemotePeer(), nil)
		}
	}
}

// release forgets a connection raft closed.
func (l *streamLayer) release(c *streamConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	if c.inbound {
		l.accepted.Done()
	}
}

// Close implements net.Listener: it stops serving RaftProtocol, ends dials
// in progress and resets every connection raft still holds. It is
// idempotent and does not wait; see closeAndWait.
func (l *streamLayer) Close() error {
	l.closeOnce.Do(func() {
		l.h.RemoveStreamHandler(RaftProtocol)
		l.cancel()
		close(l.done)
		l.mu.Lock()
		l.closed = true
		conns := make([]*streamConn, 0, len(l.conns))
		for c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		for _, c := range conns {
			_ = c.Reset()
		}
	})
	return nil
}

// closeAndWait closes the layer and waits, at most closeWait, until raft's
// transport has closed every accepted connection and seen Accept fail.
// Call it after the transport is shut down.
func (l *streamLayer) closeAndWait() {
	_ = l.Close()
	released := make(chan struct{})
	go func() {
		l.accepted.Wait()
		close(released)
	}()
	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	for _, ch := range []chan struct{}{released, l.listening} {
		select {
		case <-ch:
		case <-timer.C:
			l.log.Warn("raft transport still holds connections after close", "waited", closeWait)
			return
		}
	}
}

func (l *streamLayer) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
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
	c, ok := l.own(s, false)
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// streamConn makes a libp2p stream a net.Conn.
type streamConn struct {
	network.Stream
	local, remote net.Addr

	layer     *streamLayer // nil when not tracked
	inbound   bool
	dropped   atomic.Bool // reset by the gate
	closeOnce sync.Once
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

// Read reads from the stream. Once the layer is closed, a failed read
// reads as the end of the stream: the layer reset it, and raft's
// connection handler returns quietly on EOF.
func (c *streamConn) Read(b []byte) (int, error) {
	n, err := c.Stream.Read(b)
	if err != nil && c.layer != nil && c.layer.isClosed() {
		err = io.EOF
	}
	return n, err
}

// Close closes the stream; the layer stops tracking it.
func (c *streamConn) Close() error {
	err := c.Stream.Close()
	c.closeOnce.Do(func() {
		if c.layer != nil {
			c.layer.release(c)
		}
	})
	return err
}

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
