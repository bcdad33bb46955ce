package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/intel"
)

func newTestGossip(t testing.TB, h host.Host, opts Options) *Gossip {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	g, err := New(context.Background(), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func message(author peer.ID, data []byte) *pubsub.Message {
	topic := DefaultTopic
	return &pubsub.Message{Message: &pb.Message{From: []byte(author), Data: data, Topic: &topic}}
}

// counterValue reads one sample of a counter vector from reg.
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func TestValidatorHandlerError(t *testing.T) {
	h, key := newTestHost(t)
	rec := newRecorder()
	g := newTestGossip(t, h, Options{Handler: rec})
	env := seal(t, key, 1, time.Now())
	validate := g.validator(g.sightings)
	rec.setFail(errors.New("disk full"))
	if got := validate(context.Background(), "n", message(h.ID(), env)); got != pubsub.ValidationIgnore {
		t.Fatalf("handler error: result %v, want Ignore", got)
	}
	if g.Rejected()[ReasonHandlerError] != 1 {
		t.Fatalf("handler error not counted: %v", g.Rejected())
	}
	// The failed envelope is not remembered as seen: a later copy is taken.
	rec.setFail(nil)
	if got := validate(context.Background(), "n", message(h.ID(), env)); got != pubsub.ValidationAccept {
		t.Fatalf("retry after handler error: result %v, want Accept", got)
	}
	if got := validate(context.Background(), "n", message(h.ID(), env)); got != pubsub.ValidationIgnore {
		t.Fatalf("replay after acceptance: result %v, want Ignore", got)
	}
}

func TestValidatorClockSkewOption(t *testing.T) {
	h, key := newTestHost(t)
	g := newTestGossip(t, h, Options{Handler: newRecorder(), MaxClockSkew: time.Minute})
	validate := g.validator(g.sightings)
	if got := validate(context.Background(), "n", message(h.ID(), seal(t, key, 1, time.Now().Add(-2*time.Minute)))); got != pubsub.ValidationIgnore {
		t.Fatalf("2 min old envelope with 1 min skew: %v, want Ignore", got)
	}
	if got := validate(context.Background(), "n", message(h.ID(), seal(t, key, 2, time.Now().Add(-30*time.Second)))); got != pubsub.ValidationAccept {
		t.Fatalf("30 s old envelope with 1 min skew: %v, want Accept", got)
	}
	if g.Rejected()[ReasonStale] != 1 {
		t.Fatalf("stale not counted: %v", g.Rejected())
	}
}

func TestNewOptions(t *testing.T) {
	h, _ := newTestHost(t)
	if _, err := New(context.Background(), h, Options{}); err == nil {
		t.Fatal("New without a Handler succeeded")
	}
	if _, err := New(context.Background(), h, Options{Handler: newRecorder(), MaxClockSkew: -time.Second}); err == nil {
		t.Fatal("negative clock skew accepted")
	}
}

func TestCloseAndPublishAfterClose(t *testing.T) {
	h, key := newTestHost(t)
	rec := newRecorder()
	g := newTestGossip(t, h, Options{Handler: rec})
	ctx := context.Background()
	if err := g.Publish(ctx, seal(t, key, 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	if rec.count(h.ID().String(), 1) != 1 {
		t.Fatal("own publish did not reach the handler")
	}
	// A local publish that fails validation returns an error.
	if err := g.Publish(ctx, seal(t, key, 2, time.Now().Add(-time.Hour))); err == nil {
		t.Fatal("stale local publish succeeded")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := g.Publish(ctx, seal(t, key, 3, time.Now())); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
}

// cluster starts n nodes; nodes 1..n-1 bootstrap to node 0 only.
type clusterNode struct {
	h   host.Host
	key ed25519.PrivateKey
	g   *Gossip
	rec *recorder
}

func startCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		h, key := newTestHost(t)
		rec := newRecorder()
		g := newTestGossip(t, h, Options{Handler: rec})
		nodes[i] = &clusterNode{h: h, key: key, g: g, rec: rec}
	}
	for _, nd := range nodes[1:] {
		bs, err := NewBootstrapper(nd.h, []string{p2pAddr(nodes[0].h)}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		bs.Start(ctx)
		t.Cleanup(func() { bs.Close() })
	}
	waitFor(t, 15*time.Second, "every node to see the hub in the topic", func() bool {
		if len(nodes[0].g.Peers()) != n-1 {
			return false
		}
		for _, nd := range nodes[1:] {
			if len(nd.g.Peers()) != 1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// warmUp publishes throwaway envelopes from pub until every node has
// received one: until then the hub may not have its leaves in its mesh,
// and GossipSub forwards only to mesh peers. It returns the next free seq.
func warmUp(t *testing.T, nodes []*clusterNode, pub *clusterNode) uint64 {
	t.Helper()
	origin := pub.h.ID().String()
	deadline := time.Now().Add(20 * time.Second)
	for seq := uint64(1); ; seq++ {
		if err := pub.g.Publish(context.Background(), seal(t, pub.key, seq, time.Now())); err != nil {
			t.Fatal(err)
		}
		roundEnd := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(roundEnd) {
			all := true
			for _, nd := range nodes {
				got := false
				for s := uint64(1); s <= seq; s++ {
					got = got || nd.rec.count(origin, s) > 0
				}
				all = all && got
			}
			if all {
				return seq + 1
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatal("warm-up envelopes never reached every node")
		}
	}
}

func TestSightingReachesEveryNodeOnce(t *testing.T) {
	nodes := startCluster(t, 5)
	pub := nodes[3] // a leaf: its message must be relayed by the hub
	seq := warmUp(t, nodes, pub)
	origin := pub.h.ID().String()

	raw, err := intel.SealJSON(pub.key, intel.KindSighting, seq, time.Now(), testSighting("198.51.100.23"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.g.Publish(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the sighting at every node", func() bool {
		for _, nd := range nodes {
			if nd.rec.count(origin, seq) == 0 {
				return false
			}
		}
		return true
	})
	// Let any duplicate arrive (a hub heartbeat), then check exactly once.
	// Sleeping here makes the test stricter, never flakier.
	time.Sleep(1500 * time.Millisecond)
	for i, nd := range nodes {
		if c := nd.rec.count(origin, seq); c != 1 {
			t.Errorf("node %d handled the sighting %d times, want 1", i, c)
		}
		if r := bugRejections(nd.g.Rejected()); len(r) != 0 {
			t.Errorf("node %d rejected messages: %v", i, r)
		}
	}
}

// rogueOf starts a rogue on the sightings topic and waits until it and
// the target see each other there.
func rogueOf(t *testing.T, target host.Host, targetG *Gossip) *rogue {
	t.Helper()
	r := newRogue(t, nil, DefaultTopic)
	r.reach(t, target)
	waitFor(t, 10*time.Second, "the target to see the rogue in the topic", func() bool { return len(targetG.Peers()) == 1 })
	return r
}

func TestForgedEnvelopesOverTheNetwork(t *testing.T) {
	victim, _ := newTestHost(t)
	rec := newRecorder()
	g := newTestGossip(t, victim, Options{Handler: rec})
	r := rogueOf(t, victim, g)
	rogueKey, topic := r.key, r.topic
	_, otherKey := newKey(t)
	ctx := context.Background()

	// Someone else's valid envelope, sent under the rogue's pubsub identity.
	if err := topic.Publish(ctx, seal(t, otherKey, 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	// The rogue's own envelope with a payload byte changed after sealing.
	forged := bytes.Clone(seal(t, rogueKey, 1, time.Now()))
	forged[60] ^= 1
	if err := topic.Publish(ctx, forged); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both forgeries to be rejected", func() bool {
		r := g.Rejected()
		return r[ReasonAuthorMismatch] == 1 && r[ReasonBadSignature] == 1
	})
	// A genuine envelope sent afterwards arrives, so the forgeries were not
	// simply lost in transit.
	if err := topic.Publish(ctx, seal(t, rogueKey, 2, time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the genuine envelope", func() bool { return rec.total() == 1 })
	if rec.count(intel.NodeID(rogueKey.Public().(ed25519.PublicKey)), 2) != 1 {
		t.Fatalf("handler saw %v, want only the genuine envelope", rec.seen)
	}
}

func TestRosterRejectsOverTheNetwork(t *testing.T) {
	victim, _ := newTestHost(t)
	rec := newRecorder()
	g := newTestGossip(t, victim, Options{Handler: rec, Roster: rosterSet{victim.ID().String(): true}})
	r := rogueOf(t, victim, g)
	rogueKey, topic := r.key, r.topic
	if err := topic.Publish(context.Background(), seal(t, rogueKey, 1, time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "not_member rejection", func() bool { return g.Rejected()[ReasonNotMember] == 1 })
	if rec.total() != 0 {
		t.Fatalf("non-member envelope reached the handler: %v", rec.seen)
	}
}
