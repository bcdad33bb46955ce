package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/meshward/meshward/internal/atomicfile"
)

// PeerBook defaults.
const (
	PeerBookFile          = "peers.json"
	DefaultPeerBookSize   = 256
	DefaultPeerBookPeriod = time.Minute
)

// PeerBook remembers the peers a host was connected to in a small JSON
// file, written atomically, and dials them again after a restart, so that a
// node whose bootstrap peers are gone still finds the mesh.
type PeerBook struct {
	h      host.Host
	path   string
	logger *slog.Logger
	max    int
	period time.Duration

	// saveMu guards saved, the book as last written: a save that would
	// write the same bytes writes nothing.
	saveMu sync.Mutex
	saved  []byte

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewPeerBook keeps the book in dir/peers.json; dir is created if needed.
func NewPeerBook(h host.Host, dir string, logger *slog.Logger) (*PeerBook, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("peer book: %w", err)
	}
	return &PeerBook{h: h, path: filepath.Join(dir, PeerBookFile), logger: logger, max: DefaultPeerBookSize, period: DefaultPeerBookPeriod}, nil
}

// Load returns the peers in the book; a missing file is an empty book.
func (b *PeerBook) Load() ([]peer.AddrInfo, error) {
	data, err := os.ReadFile(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peer book: %w", err)
	}
	var ais []peer.AddrInfo
	if err := json.Unmarshal(data, &ais); err != nil {
		return nil, fmt.Errorf("peer book %s: %w", b.path, err)
	}
	return ais, nil
}

// Save writes the currently connected peers (at most 256, with their known
// addresses, in the order of their IDs) to the book, atomically: a
// temporary file, fsync, rename. When the book would not change, it
// writes nothing: a node at rest keeps its peers, and 300 nodes on one
// machine, each rewriting and syncing an unchanged file every minute,
// spent 7% of their CPU at rest on it.
func (b *PeerBook) Save() error {
	peers := b.h.Network().Peers()
	slices.Sort(peers)
	var ais []peer.AddrInfo
	for _, p := range peers {
		if len(ais) == b.max {
			break
		}
		if addrs := b.h.Peerstore().Addrs(p); len(addrs) > 0 {
			slices.SortFunc(addrs, func(x, y ma.Multiaddr) int { return bytes.Compare(x.Bytes(), y.Bytes()) })
			ais = append(ais, peer.AddrInfo{ID: p, Addrs: addrs})
		}
	}
	data, err := json.Marshal(ais)
	if err != nil {
		return fmt.Errorf("peer book: %w", err)
	}
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	if bytes.Equal(data, b.saved) {
		return nil
	}
	if err := atomicfile.Write(b.path, data, 0o600); err != nil {
		return err
	}
	b.saved = data
	return nil
}

// Start dials every peer in the book (in the background, best effort) and
// saves the book every minute until Close. Calling it again does nothing.
func (b *PeerBook) Start(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	ais, err := b.Load()
	if err != nil {
		b.logger.Warn("peer book unreadable; starting without it", "err", err)
	}
	for _, ai := range ais {
		if ai.ID == b.h.ID() || b.h.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		b.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := b.h.Connect(dctx, ai); err != nil {
				b.logger.Debug("remembered peer unreachable", "peer", ai.ID, "err", err)
			}
		}()
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for sleep(ctx, jitter(b.period)) {
			if err := b.Save(); err != nil {
				b.logger.Warn("peer book not saved", "err", err)
			}
		}
	}()
}

// Close stops the book, waits for its dials, and saves it once more if it
// was started. It is idempotent.
func (b *PeerBook) Close() error {
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
	return b.Save()
}
