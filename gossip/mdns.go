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
	svc     mdns.Service
	timeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ mdns.Notifee = (*MDNS)(nil)

// StartMDNS announces h under service (DefaultMDNSService when empty) and
// connects to every node it hears of, until Close.
func StartMDNS(h host.Host, service string, logger *slog.Logger) (*MDNS, error) {
	if service == "" {
		service = DefaultMDNSService
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &MDNS{h: h, log: logger, timeout: 10 * time.Second}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.svc = mdns.NewMdnsService(h, service, m)
	if err := m.svc.Start(); err != nil {
		m.cancel()
		return nil, fmt.Errorf("start mDNS: %w", err)
	}
	return m, nil
}

// HandlePeerFound implements mdns.Notifee: it connects to the peer in the
// background (mDNS calls it from its own goroutine and must not block).
func (m *MDNS) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.h.ID() || m.ctx.Err() != nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
		defer cancel()
		if err := m.h.Connect(ctx, ai); err != nil {
			m.log.Debug("mDNS peer unreachable", "peer", ai.ID, "err", err)
			return
		}
		m.log.Info("connected to a peer found by mDNS", "peer", ai.ID)
	}()
}

// Close stops announcing and waits for connection attempts in flight.
func (m *MDNS) Close() error {
	var err error
	m.once.Do(func() {
		err = m.svc.Close()
		m.cancel()
		m.wg.Wait()
	})
	return err
}
