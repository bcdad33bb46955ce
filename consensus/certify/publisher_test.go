package certify

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// notVoterYet is a source with no head to certify until voter is set
// (an edge, a standby), counting the looks at its head.
type notVoterYet struct {
	fakeSource
	voter *atomic.Bool
	looks *atomic.Int64
}

func (s notVoterYet) ChainHead() (Anchor, error) {
	s.looks.Add(1)
	if !s.voter.Load() {
		return Anchor{}, errors.New("no voter")
	}
	return s.fakeSource.ChainHead()
}

// startIdlePublisher starts a publisher with cfg (Publish set here) over
// a chain of three entries whose source, made by wrap, has no head to
// certify until voter is set; it returns voter, the looks at the head,
// what was published, and the publisher (closed when the test ends).
func startIdlePublisher(t *testing.T, wrap func(notVoterYet) Source, cfg PublisherConfig) (*atomic.Bool, *atomic.Int64, chan Message, *Publisher) {
	t.Helper()
	var mu sync.Mutex
	c := newChain()
	for i := range 3 {
		c.add(raft.LogCommand, []byte{byte(i)}, 0)
	}
	voter, looks := new(atomic.Bool), new(atomic.Int64)
	published := make(chan Message, 16)
	cfg.Publish = func(m Message) {
		select {
		case published <- m:
		default:
		}
	}
	p, err := StartPublisher(t.Context(), wrap(notVoterYet{fakeSource{&mu, c, kA}, voter, looks}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return voter, looks, published, p
}

// notVoter is notVoterYet answering ErrNotVoter, as a node in no
// configuration's source does.
type notVoter struct{ notVoterYet }

func (s notVoter) ChainHead() (Anchor, error) {
	if !s.voter.Load() {
		s.looks.Add(1)
		return Anchor{}, fmt.Errorf("source: %w", ErrNotVoter)
	}
	return s.notVoterYet.ChainHead()
}

// A publisher whose node is no voter looks at its head every
// NotVoterIdle (an hour here) and, woken (the configuration changed),
// at once: once a voter, it certifies without waiting for the hour.
func TestPublisherWokenWhenVoter(t *testing.T) {
	voter, looks, published, p := startIdlePublisher(t, func(s notVoterYet) Source { return notVoter{s} },
		PublisherConfig{Interval: time.Millisecond, Idle: time.Millisecond, NotVoterIdle: time.Hour})
	deadline := time.Now().Add(10 * time.Second)
	for looks.Load() == 0 { // the first tick
		if time.Now().After(deadline) {
			t.Fatal("the publisher never looked at its head")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := looks.Load(); n > 2 {
		t.Fatalf("%d looks at the head in 100ms while no voter, want 1 (then one an hour)", n)
	}
	voter.Store(true)
	p.Wake()
	select {
	case m := <-published:
		if len(m.Certs) != 1 || m.Certs[0].Index != 3 {
			t.Fatalf("published %+v, want the certificate of head 3", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published once woken as a voter")
	}
}

// A publisher with nothing to certify looks at its head every Idle, not
// every Interval, and publishes within an Idle once it has a head.
func TestPublisherIdlesWhileNoVoter(t *testing.T) {
	voter, looks, published, _ := startIdlePublisher(t, func(s notVoterYet) Source { return s },
		PublisherConfig{Interval: time.Millisecond, Idle: 100 * time.Millisecond})
	// A ticker drops the ticks a busy machine misses, so a slow run can
	// only look fewer times: at most one look per Idle, and a few more.
	time.Sleep(500 * time.Millisecond)
	if n := looks.Load(); n > 10 {
		t.Fatalf("%d looks at the head in 500ms with nothing to certify, want at most 10 (one per Idle)", n)
	}
	select {
	case m := <-published:
		t.Fatalf("published %+v with no head to certify", m)
	default:
	}
	voter.Store(true)
	select {
	case m := <-published:
		if len(m.Certs) != 1 || m.Certs[0].Index != 3 {
			t.Fatalf("published %+v, want the certificate of head 3", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published once the source had a head")
	}
}
