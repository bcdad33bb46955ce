package certify

import (
	"cmp"
	"crypto/ed25519"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestMessageRoundTrip(t *testing.T) {
	c := newChain()
	c.commands(5)
	m := Message{Entries: c.entries, Certs: []Cert{c.cert(t, kA, c.last()), c.cert(t, kB, c.last())}}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 5 || len(got.Certs) != 2 || !got.Entries[4].same(&c.entries[4]) || !got.Certs[1].Verify() {
		t.Fatalf("decoded %+v", got)
	}
	for n := range len(b) {
		if err := got.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("message truncated to %d bytes decoded", n)
		}
	}
	if err := got.UnmarshalBinary(append(b, 0)); err == nil {
		t.Fatal("a trailing byte decoded")
	}
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	if n, err := e.Offer(&m); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	wantApplied(t, e, s, c, c.last())
	if n, err := e.Offer(&m); n != 7 || ReasonOf(err) != ReasonOld {
		t.Fatalf("replayed message: %d refused, %v", n, err)
	}
}

// fakeSource is a voter over a chain the test extends; the chain is
// shared by several sources under one lock.
type fakeSource struct {
	mu *sync.Mutex
	c  *chain
	k  ed25519.PrivateKey
}

func (f fakeSource) ChainHead() (Anchor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, h := f.c.head()
	return Anchor{Index: i, Hash: h}, nil
}

func (f fakeSource) ChainEntries(from uint64, max int) ([]Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := slices.BinarySearchFunc(f.c.entries, from, func(e Entry, i uint64) int { return cmp.Compare(e.Index, i) })
	return slices.Clone(f.c.entries[i:min(i+max, len(f.c.entries))]), true
}

func (f fakeSource) CertifyHead() (Cert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, h := f.c.head()
	return SignCert(f.k, testMesh, i, f.c.term, h)
}

// Two voters' publishers feed an edge through the wire encoding: it
// applies every entry once, in order, as the chain grows.
func TestPublisherFeedsEdge(t *testing.T) {
	var mu sync.Mutex
	c := newChain()
	msgs := make(chan Message, 64)
	done := make(chan struct{})
	pub := func(m Message) {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Error(err)
			return
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Error(err)
			return
		}
		select {
		case msgs <- got:
		case <-done:
		}
	}
	pa, err := StartPublisher(t.Context(), fakeSource{&mu, c, kA}, PublisherConfig{Entries: func() bool { return true }, Publish: pub})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := StartPublisher(t.Context(), fakeSource{&mu, c, kB}, PublisherConfig{Publish: pub})
	if err != nil {
		t.Fatal(err)
	}
	e, s := newEdge(t, votersOf(kA, kB, kC), nil)
	for round := range 5 {
		mu.Lock()
		c.commands(7)
		want := c.last()
		mu.Unlock()
		for e.Applied().Index != want {
			select {
			case m := <-msgs:
				if n, err := e.Offer(&m); n != 0 && ReasonOf(err) != ReasonOld {
					t.Fatalf("round %d: %d refused: %v", round, n, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: no message for 30s; edge at %d, chain at %d", round, e.Applied().Index, want)
			}
		}
	}
	close(done)
	pa.Close()
	pb.Close()
	pa.Close() // idempotent
	wantApplied(t, e, s, c, c.last())
}
