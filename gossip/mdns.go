package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"

	"github.com/meshward/meshward/internal/routine"
)

// DefaultMDNSService is the DNS-SD service name Meshward nodes announce on
// a LAN. Nodes of different meshes on one LAN should use different names;
// they could not talk anyway (the roster keeps strangers out), but they
// would waste connections.
const DefaultMDNSService = "_meshward._udp"

// MDNS finds other nodes on the local network by multicast DNS and
// connects to them. It is off unless configured: a LAN is not always a
// trusted place, and bootstrap peers are the primary discovery.
type MDNS struct {
	h       host.Host
	log     *slog.Logger
	service string
	timeout time.Duration

	mu       sync.Mutex
	svc      mdns.Service   // nil until Start
	routines *routine.Group // connection attempts; nil until Start
	closed   bool
}

var _ mdns.Notifee = (*MDNS)(nil)

// NewMDNS prepares announcing h under service (DefaultMDNSService when
// empty); nothing runs until Start.
func NewMDNS(h host.Host, service string, logger *slog.Logger) *MDNS {
	if service == "" {
		service = DefaultMDNSService
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &MDNS{h: h, log: logger, service: service, timeout: 10 * time.Second}
}

// Start announces the host and connects to every node it hears of, until
// ctx ends or Close. Calling it again, or after Close, does nothing.
func (m *MDNS) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.svc != nil {
		return nil
	}
	m.routines = routine.New(ctx)
	m.svc = mdns.NewMdnsService(m.h, m.service, m)
	if err := m.svc.Start(); err != nil {
		m.routines.Close()
		m.svc = nil
		return fmt.Errorf("start mDNS: %w", err)
	}
	return nil
}

// HandlePeerFound implements mdns.Notifee: it connects to the peer in the
// background (mDNS calls it from its own goroutine and must not block).
func (m *MDNS) HandlePeerFound(ai peer.AddrInfo) {
	m.mu.Lock()
	rg := m.routines
	m.mu.Unlock()
	if ai.ID == m.h.ID() || rg == nil {
		return
	}
	rg.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, m.timeout)
		defer cancel()
		if err := m.h.Connect(ctx, ai); err != nil {
			m.log.Debug("mDNS peer unreachable", "peer", ai.ID, "err", err)
			return
		}
		m.log.Info("connected to a peer found by mDNS", "peer", ai.ID)
	})
}

// Close stops announcing and waits for connection attempts in flight. It
// is idempotent.
func (m *MDNS) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	svc, rg := m.svc, m.routines
	m.mu.Unlock()
	if svc == nil {
		return nil
	}
	err := svc.Close()
	rg.Close()
	if err != nil {
		return fmt.Errorf("stop mDNS: %w", err)
	}
	return nil
}
