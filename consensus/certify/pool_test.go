package certify

import (
	"crypto/ed25519"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The pool keeps the latest certificate of each signer, and Covered is
// the index a majority's certificates reach.
func TestPoolKeepsLatestAndCovers(t *testing.T) {
	c := newChain()
	plain(c, 5)
	a, b, d := key("a"), key("b"), key("d")
	voters := votersOf(a, b, d)
	p := NewPool()
	if !p.Add(c.cert(t, a, 4)) || !p.Add(c.cert(t, b, 2)) || p.Add(c.cert(t, a, 3)) {
		t.Fatal("the pool kept an older certificate, or refused a newer one")
	}
	if got := p.Covered(voters); got != 2 {
		t.Fatalf("covered %d, want 2 (a at 4, b at 2)", got)
	}
	p.Add(c.cert(t, d, 5))
	if got := p.Covered(voters); got != 4 {
		t.Fatalf("covered %d, want 4 (a at 4, b at 2, d at 5)", got)
	}
	if got := p.Covered(votersOf(a)); got != 4 {
		t.Fatalf("covered %d among a alone", got)
	}
	if got := len(p.Certs(votersOf(b, key("x")))); got != 1 {
		t.Fatalf("%d certificates of b and a stranger", got)
	}
	held, forged, older := c.cert(t, d, 5), c.cert(t, d, 5), c.cert(t, d, 4)
	forged.Sig = append([]byte(nil), forged.Sig...)
	forged.Sig[3] ^= 1
	if !p.Has(&held) || p.Has(&forged) || p.Has(&older) {
		t.Fatal("Has: the held certificate not found, or a forged or older one found")
	}
}

// plain appends n commands without holes.
func plain(c *chain, n int) {
	for range n {
		c.add(raft.LogCommand, []byte("command"), 0)
	}
}

// votedSource is a fakeSource whose head names the voters.
type votedSource struct {
	fakeSource
	voters Voters
}

func (v votedSource) ChainHead() (Anchor, error) {
	a, err := v.fakeSource.ChainHead()
	a.Voters = v.voters
	return a, err
}

// The leader publishes the entries with a majority's certificates in one
// message; without a majority it waits Wait, publishes what it has, and
// follows up with the certificates that complete the majority; a
// straggler's certificate after that waits for the next batch.
func TestPublisherLeaderAggregates(t *testing.T) {
	var mu sync.Mutex
	c := newChain()
	plain(c, 3)
	a, b, d := key("a"), key("b"), key("d")
	var held []Cert // other voters' certificates, as the servers' topic brings them
	hold := func(k ed25519.PrivateKey, index uint64) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, c.cert(t, k, index))
	}
	hold(b, 3)
	type sent struct {
		m  Message
		at time.Time
	}
	out := make(chan sent, 16)
	const wait = 200 * time.Millisecond
	var looks atomic.Int64 // calls of Held: the publisher's ticks as leader
	p, err := StartPublisher(t.Context(), votedSource{fakeSource{&mu, c, a}, votersOf(a, b, d)}, PublisherConfig{
		Interval: time.Millisecond, Wait: wait, Fallback: time.Hour,
		Entries: func() bool { return true },
		Publish: func(m Message) { out <- sent{m, time.Now()} },
		Servers: func(Cert) {},
		Held: func(upTo uint64) []Cert {
			looks.Add(1)
			mu.Lock()
			defer mu.Unlock()
			var hs []Cert
			for _, h := range held {
				if h.Index <= upTo {
					hs = append(hs, h)
				}
			}
			return hs
		},
		Covered: func(Voters) uint64 { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	next := func() sent {
		t.Helper()
		select {
		case s := <-out:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("nothing published")
		}
		return sent{}
	}
	signers := func(m Message) map[string]uint64 {
		s := map[string]uint64{}
		for _, c := range m.Certs {
			s[c.SignerID()] = c.Index
		}
		return s
	}
	// A majority (a, b) holds the head: one message, entries and both.
	m1 := next().m
	if len(m1.Entries) != 3 || signers(m1)[idOf(a)] != 3 || signers(m1)[idOf(b)] != 3 || len(m1.Certs) != 2 {
		t.Fatalf("first message: %d entries, certificates %v", len(m1.Entries), signers(m1))
	}
	// Two more entries, only the leader's certificate: it waits, then
	// publishes them with its own.
	mu.Lock()
	c.add(raft.LogCommand, []byte("x"), 0)
	c.add(raft.LogCommand, []byte("y"), 0)
	mu.Unlock()
	added := time.Now()
	s2 := next()
	if len(s2.m.Entries) != 2 || len(s2.m.Certs) != 1 || signers(s2.m)[idOf(a)] != 5 {
		t.Fatalf("second message: %d entries, certificates %v", len(s2.m.Entries), signers(s2.m))
	}
	if d := s2.at.Sub(added); d < wait {
		t.Fatalf("published %s after the entries without a majority, want a wait of %s", d, wait)
	}
	// b's certificate completes the majority: a follow-up with it alone.
	hold(b, 5)
	if m3 := next().m; len(m3.Entries) != 0 || len(m3.Certs) != 1 || signers(m3)[idOf(b)] != 5 {
		t.Fatalf("follow-up: %d entries, certificates %v", len(m3.Entries), signers(m3))
	}
	// d's, a straggler, brings the edges nothing new: not published,
	// neither alone nor with the next batch (the edges applied up to
	// its index).
	hold(d, 5)
	for n := looks.Load(); looks.Load() < n+3; { // ticks that saw it
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	c.add(raft.LogCommand, []byte("z"), 0)
	mu.Unlock()
	hold(b, 6)
	m4 := next().m
	if len(m4.Entries) != 1 || len(m4.Certs) != 2 || signers(m4)[idOf(b)] != 6 || signers(m4)[idOf(a)] != 6 {
		t.Fatalf("after the straggler: %d entries, certificates %v", len(m4.Entries), signers(m4))
	}
	if s := p.Stats(); s.Messages != 4 || s.Entries != 6 || s.Fallbacks != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A voter that does not lead publishes its own certificate to the edges
// only when no majority on their topic covered it within Fallback, once
// per index.
func TestPublisherFallsBack(t *testing.T) {
	var mu sync.Mutex
	c := newChain()
	plain(c, 3)
	a, b, d := key("a"), key("b"), key("d")
	var covered atomic.Uint64
	covered.Store(3)
	out := make(chan Message, 16)
	toServers := make(chan Cert, 16)
	p, err := StartPublisher(t.Context(), votedSource{fakeSource{&mu, c, b}, votersOf(a, b, d)}, PublisherConfig{
		Interval: time.Millisecond, Fallback: 100 * time.Millisecond,
		Entries: func() bool { return false },
		Publish: func(m Message) { out <- m },
		Servers: func(c Cert) { toServers <- c },
		Held:    func(uint64) []Cert { return nil },
		Covered: func(Voters) uint64 { return covered.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if ct := <-toServers; ct.Index != 3 || ct.SignerID() != idOf(b) {
		t.Fatalf("to the servers: %d by %s", ct.Index, ct.SignerID())
	}
	// Covered: nothing to the edges; a new head goes uncovered.
	mu.Lock()
	c.add(raft.LogCommand, []byte("x"), 0)
	mu.Unlock()
	if ct := <-toServers; ct.Index != 4 {
		t.Fatalf("to the servers: %d", ct.Index)
	}
	select {
	case m := <-out:
		if len(m.Certs) != 1 || m.Certs[0].Index != 4 || len(m.Entries) != 0 {
			t.Fatalf("fallback %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fallback")
	}
	if s := p.Stats(); s.Fallbacks != 1 || s.Messages != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Once per index: the next head falls back again.
	mu.Lock()
	c.add(raft.LogCommand, []byte("y"), 0)
	mu.Unlock()
	if m := <-out; m.Certs[0].Index != 5 {
		t.Fatalf("second fallback at %d", m.Certs[0].Index)
	}
	if s := p.Stats(); s.Fallbacks != 2 {
		t.Fatalf("stats %+v", s)
	}
}
