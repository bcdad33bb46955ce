package gossip

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

var loopback = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// newKey returns a fresh libp2p key and its raw ed25519 form.
func newKey(t testing.TB) (crypto.PrivKey, ed25519.PrivateKey) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sk.Raw()
	if err != nil {
		t.Fatal(err)
	}
	return sk, ed25519.PrivateKey(raw)
}

func newTestHost(t testing.TB) (host.Host, ed25519.PrivateKey) {
	t.Helper()
	sk, raw := newKey(t)
	h, err := NewHost(HostConfig{Key: sk, ListenAddrs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, raw
}

// p2pAddr is h's first listen address with /p2p/<id>.
func p2pAddr(h host.Host) string {
	return fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID())
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func testSighting(value string) intel.Sighting {
	t0 := time.Now().UTC().Truncate(time.Second)
	return intel.Sighting{
		Indicator:  intel.Indicator{Type: intel.IPv4, Value: value},
		Detector:   "ssh-bruteforce",
		Technique:  "T1110.001",
		Severity:   intel.SeverityHigh,
		Confidence: 80,
		Count:      5,
		FirstSeen:  t0.Add(-10 * time.Second),
		LastSeen:   t0,
	}
}

func seal(t testing.TB, key ed25519.PrivateKey, seq uint64, ts time.Time) []byte {
	t.Helper()
	b, err := intel.SealJSON(key, intel.KindSighting, seq, ts, testSighting("203.0.113.7"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is a Handler that counts envelopes by (origin, seq).
type recorder struct {
	mu   sync.Mutex
	seen map[string]int
	fail error
}

func newRecorder() *recorder { return &recorder{seen: make(map[string]int)} }

func (r *recorder) HandleEnvelope(_ context.Context, env *intel.Envelope, _ peer.ID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.seen[envKey(env.OriginID(), env.Seq)]++
	return nil
}

func (r *recorder) count(origin string, seq uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[envKey(origin, seq)]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.seen {
		n += c
	}
	return n
}

func (r *recorder) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

func envKey(origin string, seq uint64) string { return fmt.Sprintf("%s/%d", origin, seq) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type rosterSet map[string]bool

func (r rosterSet) IsMember(id string) bool { return r[id] }

// bareJoin joins topic on h with a bare GossipSub and no validator, so a
// test can publish what a Meshward node would refuse to send. Everything
// stops when the test ends.
func bareJoin(t *testing.T, h host.Host, topic string) *pubsub.Topic {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Cancel)
	return tp
}
