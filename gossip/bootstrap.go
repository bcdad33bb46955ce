package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// bootstrapTag protects bootstrap connections from the connection manager.
const bootstrapTag = "meshward-bootstrap"

// Bootstrapper keeps a host connected to a fixed set of peers: it dials
// each at Start and redials, with jittered exponential backoff, whenever the
// peer is disconnected.
type Bootstrapper struct {
	h      host.Host
	peers  []peer.AddrInfo
	logger *slog.Logger

	// Tunables; tests shorten them before Start.
	minBackoff, maxBackoff time.Duration
	dialTimeout            time.Duration
	recheck                time.Duration // safety poll while connected

	wake   map[peer.ID]chan struct{}
	notify *network.NotifyBundle

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewBootstrapper parses peers, multiaddrs that end in /p2p/<id>. An
// address that does not parse is an error naming it. Addresses of one peer
// are merged; the host's own ID is skipped, so every node can share one list.
func NewBootstrapper(h host.Host, peers []string, logger *slog.Logger) (*Bootstrapper, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Bootstrapper{
		h:           h,
		logger:      logger,
		minBackoff:  time.Second,
		maxBackoff:  time.Minute,
		dialTimeout: 10 * time.Second,
		recheck:     30 * time.Second,
		wake:        make(map[peer.ID]chan struct{}),
	}
	index := make(map[peer.ID]int)
	for _, s := range peers {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap peer %q: %w", s, err)
		}
		if ai.ID == h.ID() {
			continue
		}
		if i, ok := index[ai.ID]; ok {
			b.peers[i].Addrs = append(b.peers[i].Addrs, ai.Addrs...)
			continue
		}
		index[ai.ID] = len(b.peers)
		b.peers = append(b.peers, *ai)
		b.wake[ai.ID] = make(chan struct{}, 1)
	}
	return b, nil
}

// Peers returns the peers the bootstrapper keeps connected.
func (b *Bootstrapper) Peers() []peer.AddrInfo {
	out := make([]peer.AddrInfo, len(b.peers))
	copy(out, b.peers)
	return out
}

// Start dials every bootstrap peer and keeps redialling in the background
// until ctx ends or Close is called. It returns at once; calling it again
// does nothing.
func (b *Bootstrapper) Start(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	b.notify = &network.NotifyBundle{
		DisconnectedF: func(_ network.Network, c network.Conn) {
			if ch, ok := b.wake[c.RemotePeer()]; ok {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		},
	}
	b.h.Network().Notify(b.notify)
	for _, ai := range b.peers {
		b.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		b.h.ConnManager().Protect(ai.ID, bootstrapTag)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.keep(ctx, ai)
		}()
	}
}

// keep holds one connection to ai until ctx ends. A failed dial backs off
// exponentially; so does a connection that drops soon after it was made, so
// a flapping peer is not redialled in a tight loop.
func (b *Bootstrapper) keep(ctx context.Context, ai peer.AddrInfo) {
	backoff := b.minBackoff
	wake := b.wake[ai.ID]
	var connectedAt time.Time
	wait := func() bool {
		d := jitter(backoff)
		backoff = min(2*backoff, b.maxBackoff)
		return sleep(ctx, d)
	}
	for {
		if b.h.Network().Connectedness(ai.ID) != network.Connected {
			// We back off ourselves; the swarm's own dial backoff would
			// otherwise hold a restarted peer unreachable for seconds.
			dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "meshward bootstrap"), b.dialTimeout)
			err := b.h.Connect(dctx, ai)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				b.logger.Debug("bootstrap dial failed", "peer", ai.ID, "backoff", backoff, "err", err)
				if !wait() {
					return
				}
				continue
			}
			b.logger.Info("connected to bootstrap peer", "peer", ai.ID)
			connectedAt = time.Now()
		}
		t := time.NewTimer(b.recheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
			if b.h.Network().Connectedness(ai.ID) == network.Connected {
				continue // another connection to the peer is still up
			}
			b.logger.Info("bootstrap peer disconnected", "peer", ai.ID)
			if time.Since(connectedAt) < stableConn(b.maxBackoff) {
				if !wait() {
					return
				}
			} else {
				backoff = b.minBackoff
			}
		case <-t.C:
		}
	}
}

// stableConn is how long a connection must last for its loss to reset the
// backoff.
func stableConn(maxBackoff time.Duration) time.Duration { return maxBackoff }

// jitter returns a duration drawn uniformly from [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Close stops the redial loops and waits for them. It is idempotent. It
// does not close connections that are already open.
func (b *Bootstrapper) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	b.mu.Unlock()
	if !started {
		return nil
	}
	b.cancel()
	b.wg.Wait()
	b.h.Network().StopNotify(b.notify)
	for _, ai := range b.peers {
		b.h.ConnManager().Unprotect(ai.ID, bootstrapTag)
	}
	return nil
}
