package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/conngater"

	"github.com/meshward/meshward/intel"
)

// memLog is an in-memory envelope log: both the Handler and the Log of a
// test node. dups counts envelopes handed over that it already held.
type memLog struct {
	mu   sync.Mutex
	envs map[string]map[uint64][]byte
	dups int
}

func newMemLog() *memLog { return &memLog{envs: make(map[string]map[uint64][]byte)} }

func (l *memLog) HandleEnvelope(_ context.Context, env *intel.Envelope, _ peer.ID) error {
	l.put(env.OriginID(), env.Seq, env.Raw)
	return nil
}

func (l *memLog) put(origin string, seq uint64, raw []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.envs[origin]
	if m == nil {
		m = make(map[uint64][]byte)
		l.envs[origin] = m
	}
	if _, ok := m[seq]; ok {
		l.dups++
		return
	}
	m[seq] = bytes.Clone(raw)
}

func (l *memLog) HighWater() (map[string]uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, len(l.envs))
	for o, m := range l.envs {
		out[o] = slices.Max(slices.Collect(maps.Keys(m)))
	}
	return out, nil
}

func (l *memLog) ScanEnvelopes(origin string, after uint64, fn func([]byte) error) error {
	l.mu.Lock()
	m := l.envs[origin]
	seqs := slices.Sorted(maps.Keys(m))
	raws := make([][]byte, 0, len(seqs))
	for _, s := range seqs {
		if s > after {
			raws = append(raws, m[s])
		}
	}
	l.mu.Unlock()
	for _, r := range raws {
		if err := fn(bytes.Clone(r)); err != nil {
			return err
		}
	}
	return nil
}

func (l *memLog) has(origin string, seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.envs[origin][seq]
	return ok
}

func (l *memLog) count(origin string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.envs[origin])
}

func (l *memLog) dupCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dups
}

// meshNode is one test node on real loopback transports.
type meshNode struct {
	sk    crypto.PrivKey
	key   ed25519.PrivateKey
	h     host.Host
	gater *conngater.BasicConnectionGater
	g     *Gossip
	log   *memLog
	seq   uint64 // last sequence number this node sealed
}

func (n *meshNode) id() string { return n.h.ID().String() }

// startMeshNode starts a host (with a connection gater) and a Gossip whose
// Handler is log; opts.Handler is set from log unless given. A nil sk
// means a fresh identity. Heartbeats, if on, are signed with the node key.
func startMeshNode(t testing.TB, sk crypto.PrivKey, log *memLog, opts Options) *meshNode {
	t.Helper()
	if sk == nil {
		sk, _ = newKey(t)
	}
	raw, err := sk.Raw()
	if err != nil {
		t.Fatal(err)
	}
	gater, err := conngater.NewBasicConnectionGater(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(HostConfig{Key: sk, ListenAddrs: loopback, ConnectionGater: gater})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if opts.Handler == nil {
		opts.Handler = log
	}
	if opts.Heartbeats != nil && opts.Heartbeats.Key == nil {
		hb := *opts.Heartbeats
		hb.Key = ed25519.PrivateKey(raw) // the node's own key signs its heartbeats
		opts.Heartbeats = &hb
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	g, err := New(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &meshNode{sk: sk, key: ed25519.PrivateKey(raw), h: h, gater: gater, g: g, log: log}
}

func (n *meshNode) stop() {
	n.g.Close()
	n.h.Close()
}

func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	// A generous bound: on a loaded machine under -race, identify alone
	// can take several seconds.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatalf("connect %s to %s: %v", a.ID(), b.ID(), err)
	}
}

// publish seals and publishes a sighting of value from n with its next seq.
func (n *meshNode) publish(t testing.TB, value string) uint64 {
	t.Helper()
	n.seq++
	raw, err := intel.SealJSON(n.key, intel.KindSighting, n.seq, time.Now(), testSighting(value))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.g.Publish(context.Background(), raw); err != nil {
		t.Fatalf("publish seq %d: %v", n.seq, err)
	}
	return n.seq
}

// warmMesh publishes throwaway sightings from pub until every node holds
// one of them, so that the mesh has formed.
func warmMesh(t testing.TB, nodes []*meshNode, pub *meshNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pub.publish(t, "192.0.2.1")
		roundEnd := time.Now().Add(time.Second)
		for time.Now().Before(roundEnd) {
			all := true
			for _, n := range nodes {
				all = all && n.log.count(pub.id()) > 0
			}
			if all {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatal("warm-up sightings never reached every node")
		}
	}
}

func connected(a, b host.Host) bool {
	return a.Network().Connectedness(b.ID()) == network.Connected
}

// quietLogger discards: mesh tests run too many nodes to log them all.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
