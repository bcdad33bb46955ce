package gossip

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// verdict is a Handler refusal with a reason, as consensus gives.
type verdict struct {
	reason string
	ignore bool
}

func (v verdict) Error() string  { return v.reason }
func (v verdict) Reason() string { return v.reason }
func (v verdict) Ignore() bool   { return v.ignore }

// The certified topic hands a member's messages to the Handler, refuses
// oversized ones before it, and counts every refusal under the reason
// the Handler names (or "refused").
func TestCertifiedTopicChecksAndCounts(t *testing.T) {
	member := newRogue(t, nil, DefaultCertifiedTopic)
	roster := &switchRoster{}
	n := startMeshNode(t, nil, newMemLog(), Options{Roster: roster})
	roster.set(rosterSet{n.id(): true, member.id(): true})
	var mu sync.Mutex
	var got [][]byte
	ct, err := n.g.JoinCertified(CertifiedOptions{MaxSize: 64, Handler: func(_ context.Context, from peer.ID, data []byte) error {
		if from.String() != member.id() {
			return errors.New("wrong author")
		}
		switch string(data) {
		case "forged":
			return verdict{reason: "chain_mismatch"}
		case "old":
			return verdict{reason: "old", ignore: true}
		case "bad":
			return errors.New("no reason given")
		}
		mu.Lock()
		got = append(got, bytes.Clone(data))
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.g.JoinCertified(CertifiedOptions{}); err == nil {
		t.Fatal("a second certified topic without a Handler was joined")
	}
	member.reach(t, n.h)
	handled := func() uint64 {
		s := ct.Accepted()
		for _, v := range ct.Refused() {
			s += v
		}
		return s
	}
	for i, msg := range [][]byte{[]byte("entries"), bytes.Repeat([]byte{1}, 65), []byte("forged"), []byte("old"), []byte("bad")} {
		member.publish(t, msg)
		waitFor(t, 10*time.Second, "the message handled", func() bool { return handled() == uint64(i+1) })
	}
	want := map[string]uint64{ReasonOversized: 1, "chain_mismatch": 1, "old": 1, ReasonCertifiedRefused: 1}
	if r := ct.Refused(); len(r) != len(want) || r[ReasonOversized] != 1 || r["chain_mismatch"] != 1 || r["old"] != 1 || r[ReasonCertifiedRefused] != 1 {
		t.Fatalf("refused %v, want %v", r, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if ct.Accepted() != 1 || len(got) != 1 || string(got[0]) != "entries" {
		t.Fatalf("accepted %d, handled %q", ct.Accepted(), got)
	}
}

// A stranger's message on the certified topic never reaches the Handler:
// it is refused not_member and counted.
func TestCertifiedTopicRefusesStrangers(t *testing.T) {
	stranger := newRogue(t, nil, DefaultCertifiedTopic)
	n := startMeshNode(t, nil, newMemLog(), Options{Roster: &switchRoster{}})
	var handled atomic.Int32
	ct, err := n.g.JoinCertified(CertifiedOptions{Handler: func(context.Context, peer.ID, []byte) error {
		handled.Add(1)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	stranger.reach(t, n.h)
	stranger.publish(t, []byte("entries"))
	waitFor(t, 10*time.Second, "the stranger's message refused", func() bool { return ct.Refused()[ReasonNotMember] == 1 })
	if handled.Load() != 0 || ct.Accepted() != 0 {
		t.Fatalf("a stranger's message was handled (%d) or accepted (%d)", handled.Load(), ct.Accepted())
	}
}
