package certify

import (
	"errors"
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

// A publisher with nothing to certify looks at its head every Idle, not
// every Interval, and publishes within an Idle once it has a head.
func TestPublisherIdlesWhileNoVoter(t *testing.T) {
	var mu sync.Mutex
	c := newChain()
	for i := range 3 {
		c.add(raft.LogCommand, []byte{byte(i)}, 0)
	}
	var voter atomic.Bool
	var looks atomic.Int64
	published := make(chan Message, 16)
	src := notVoterYet{fakeSource{&mu, c, kA}, &voter, &looks}
	p, err := StartPublisher(t.Context(), src, PublisherConfig{Interval: time.Millisecond, Idle: 100 * time.Millisecond,
		Publish: func(m Message) {
			select {
			case published <- m:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
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
