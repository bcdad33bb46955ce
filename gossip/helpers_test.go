package gossip

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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

// seal signs a sighting sent at ts and seen just before it, as a node
// would have.
func seal(t testing.TB, key ed25519.PrivateKey, seq uint64, ts time.Time) []byte {
	t.Helper()
	s := testSighting("203.0.113.7")
	s.FirstSeen, s.LastSeen = ts.Add(-10*time.Second).UTC(), ts.UTC()
	b, err := intel.SealJSON(key, intel.KindSighting, seq, ts, s)
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
	if !waitUntil(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// waitUntil polls cond until it holds (true) or timeout passes (false).
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

type rosterSet map[string]bool

func (r rosterSet) IsMember(id string) bool { return r[id] }

// bareJoin joins topic on h with a bare GossipSub (options opts) and no
// validator, so a test can publish what a Meshward node would refuse to
// send. Everything stops when the test ends.
func bareJoin(t testing.TB, h host.Host, topic string, opts ...pubsub.Option) *pubsub.Topic {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, append([]pubsub.Option{pubsub.WithFloodPublish(true)}, opts...)...)
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

// rogue is a peer with a bare GossipSub and no validator on one topic, so
// that it can send what a Meshward node would refuse to send.
type rogue struct {
	h     host.Host
	key   ed25519.PrivateKey
	topic *pubsub.Topic
}

// newRogue starts a rogue host on loopback with key (nil means a fresh
// one) and joins topic with GossipSub options opts.
func newRogue(t testing.TB, key ed25519.PrivateKey, topic string, opts ...pubsub.Option) *rogue {
	t.Helper()
	var sk crypto.PrivKey
	if key == nil {
		sk, key = newKey(t)
	} else {
		sk = must(crypto.UnmarshalEd25519PrivateKey(key))
	}
	h, err := NewHost(HostConfig{Key: sk, ListenAddrs: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &rogue{h: h, key: key, topic: bareJoin(t, h, topic, opts...)}
}

// reach connects the rogue to hosts and waits until it sees every one of
// them in its topic.
func (r *rogue) reach(t testing.TB, hosts ...host.Host) {
	t.Helper()
	for _, h := range hosts {
		connect(t, r.h, h)
	}
	waitFor(t, 10*time.Second, "the rogue's targets in its topic", func() bool { return len(r.topic.ListPeers()) == len(hosts) })
}

// publish sends raw on the rogue's topic.
func (r *rogue) publish(t testing.TB, raw []byte) {
	t.Helper()
	if err := r.topic.Publish(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
}

func (r *rogue) id() string { return r.h.ID().String() }

// loadReasons are the drops a busy machine causes without any bug: the
// validation queue or its throttle overflowing, the rate limiter refusing
// a burst, and a subscription reader falling behind (undeliverable: the
// message was validated and relayed all the same). What they drop, gossip
// repeats and anti-entropy repairs.
var loadReasons = []string{ReasonQueueFull, ReasonThrottled, ReasonRateLimited, ReasonUndeliverable}

// bugRejections returns the rejections in r that a correct mesh never
// makes, whatever the load: every reason but loadReasons and also.
func bugRejections(r map[string]uint64, also ...string) map[string]uint64 {
	out := maps.Clone(r)
	for _, k := range slices.Concat(loadReasons, also) {
		delete(out, k)
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return v
}
