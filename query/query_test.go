package query

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.ResourceManager(&network.NullResourceManager{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// members is a roster of peer IDs.
type members struct {
	mu  sync.Mutex
	ids map[peer.ID]bool
}

func (m *members) add(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[p] = true
}

func (m *members) has(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[p]
}

// sightingAnswer is what the test's members answer to an indicator query.
type sightingAnswer struct {
	Node      string `json:"node"`
	Indicator string `json:"indicator"`
	Seen      int    `json:"seen"`
}

// mesh is n hosts, each serving queries for the same roster, each
// answering that it saw the indicator as many times as its index.
func mesh(t *testing.T, n int) ([]host.Host, []*Server, *members) {
	t.Helper()
	roster := &members{ids: map[peer.ID]bool{}}
	hosts := make([]host.Host, n)
	servers := make([]*Server, n)
	for i := range n {
		hosts[i] = newHost(t)
		roster.add(hosts[i].ID())
		s, err := NewServer(hosts[i], ServerOptions{
			Member: roster.has,
			Answer: func(_ context.Context, _ peer.ID, req Request) (any, error) {
				if req.Kind != KindIndicator {
					return nil, errors.New("only indicators here")
				}
				return sightingAnswer{Node: hosts[i].ID().String(), Indicator: req.Indicator, Seen: i}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		servers[i] = s
	}
	for _, a := range hosts {
		for _, b := range hosts {
			if a != b {
				a.Peerstore().AddAddrs(b.ID(), b.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
	}
	return hosts, servers, roster
}

func ids(hs []host.Host) []peer.ID {
	out := make([]peer.ID, len(hs))
	for i, h := range hs {
		out[i] = h.ID()
	}
	return out
}

// TestQueryFiveNodesOneKilled: five members, one of them stopped; a
// question from another reaches the other four, which answer, and the
// stopped one is reported unreachable, all within the deadline.
func TestQueryFiveNodesOneKilled(t *testing.T) {
	hosts, servers, _ := mesh(t, 6)
	asker, members := hosts[0], hosts[1:]
	servers[5].Close()
	if err := members[4].Close(); err != nil {
		t.Fatal(err)
	}
	const deadline = 10 * time.Second
	start := time.Now()
	rs, err := Ask(t.Context(), asker, ids(members), Request{Kind: KindIndicator, Indicator: "203.0.113.7"}, deadline)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > deadline+time.Second {
		t.Fatalf("the query took %s, past its deadline %s", took, deadline)
	}
	if got := Summary(rs); got[Answered] != 4 || got[Unreachable] != 1 || len(rs) != 5 {
		t.Fatalf("summary %v, want 4 answered and 1 unreachable: %+v", got, rs)
	}
	for i, r := range rs[:4] {
		var a sightingAnswer
		if err := json.Unmarshal(r.Answer, &a); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if r.Node != members[i].ID().String() || a.Node != r.Node || a.Indicator != "203.0.113.7" || a.Seen != i+1 {
			t.Errorf("result %d: %+v answer %+v", i, r, a)
		}
	}
	if rs[4].Status != Unreachable || rs[4].Error == "" || rs[4].Node != members[4].ID().String() {
		t.Errorf("stopped member: %+v", rs[4])
	}
}

// TestQueryStrangerRefused: a host not on the roster asks; every member
// refuses it, says why, and counts the refusal.
func TestQueryStrangerRefused(t *testing.T) {
	hosts, servers, _ := mesh(t, 2)
	stranger := newHost(t)
	for _, h := range hosts {
		stranger.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.PermanentAddrTTL)
	}
	rs, err := Ask(t.Context(), stranger, ids(hosts), Request{Kind: KindIndicator, Indicator: "203.0.113.7"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Status != Refused || r.Error != RefusedNotMember || len(r.Answer) != 0 {
			t.Errorf("member %d: %+v, want refused not_member without an answer", i, r)
		}
		if n := servers[i].Refusals().Count(string(Protocol), RefusedNotMember); n != 1 {
			t.Errorf("member %d counted %d not_member refusals, want 1", i, n)
		}
	}
}

// TestQueryHostileRequests: oversized, malformed and invalid requests
// from a member are refused for a named, counted reason, and the member
// keeps answering good ones.
func TestQueryHostileRequests(t *testing.T) {
	hosts, servers, _ := mesh(t, 2)
	asker, target, srv := hosts[0], hosts[1], servers[1]
	raw := func(body string) response {
		t.Helper()
		st, err := asker.NewStream(t.Context(), target.ID(), Protocol)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(st, body); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseWrite()
		var resp response
		if err := json.NewDecoder(st).Decode(&resp); err != nil {
			t.Fatalf("%.40q: %v", body, err)
		}
		return resp
	}
	for _, c := range []struct{ body, reason string }{
		{strings.Repeat("x", MaxRequestBytes+10) + "\n", RefusedOversized},
		{"{not json\n", RefusedMalformed},
		{`{"kind":"indicator","indicator":"x","extra":1}` + "\n", RefusedMalformed},
		{`{"kind":"delete_everything"}` + "\n", RefusedMalformed},
		{`{"kind":"indicator"}` + "\n", RefusedMalformed},
	} {
		before := srv.Refusals().Count(string(Protocol), c.reason)
		if resp := raw(c.body); resp.Refused != c.reason {
			t.Errorf("%.40q: response %+v, want refused %s", c.body, resp, c.reason)
		}
		if srv.Refusals().Count(string(Protocol), c.reason) != before+1 {
			t.Errorf("%.40q: refusal %s not counted", c.body, c.reason)
		}
	}
	if _, err := Ask(t.Context(), asker, []peer.ID{target.ID()}, Request{Kind: "nope"}, time.Second); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("an invalid request was sent: %v", err)
	}
	rs, err := Ask(t.Context(), asker, []peer.ID{target.ID()}, Request{Kind: KindIndicator, Indicator: "198.51.100.1"}, 10*time.Second)
	if err != nil || rs[0].Status != Answered {
		t.Fatalf("after the hostile requests: %+v, %v", rs, err)
	}
	// An answerer's error reaches the asker as an error, not an answer.
	rs, _ = Ask(t.Context(), asker, []peer.ID{target.ID()}, Request{Kind: KindHealth}, 10*time.Second)
	if rs[0].Status != Failed || !strings.Contains(rs[0].Error, "only indicators") {
		t.Errorf("health: %+v, want the answerer's error", rs[0])
	}
}

// TestQuerySlowMemberTimesOutAndBusyRefused: a member that does not
// answer in time is reported timed_out at the deadline; while its one
// answer slot is taken, another question is refused as busy.
func TestQuerySlowMemberTimesOutAndBusyRefused(t *testing.T) {
	asker, slow := newHost(t), newHost(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	srv, err := NewServer(slow, ServerOptions{
		Member:        func(peer.ID) bool { return true },
		MaxConcurrent: 1,
		Answer: func(ctx context.Context, _ peer.ID, _ Request) (any, error) {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "late", nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer close(release)
	asker.Peerstore().AddAddrs(slow.ID(), slow.Addrs(), peerstore.PermanentAddrTTL)
	req := Request{Kind: KindHealth}

	done := make(chan []Result, 1)
	go func() {
		rs, _ := Ask(context.Background(), asker, []peer.ID{slow.ID()}, req, 2*time.Second)
		done <- rs
	}()
	<-entered // the slot is taken
	rs, err := Ask(t.Context(), asker, []peer.ID{slow.ID()}, req, 10*time.Second)
	if err != nil || rs[0].Status != Refused || rs[0].Error != RefusedBusy {
		t.Fatalf("second question: %+v, %v; want refused busy", rs, err)
	}
	if srv.Refusals().Count(string(Protocol), RefusedBusy) != 1 {
		t.Error("busy refusal not counted")
	}
	first := <-done
	if first[0].Status != TimedOut {
		t.Fatalf("slow member: %+v, want timed_out", first[0])
	}
}

func TestComplianceRequestValidates(t *testing.T) {
	if err := (Request{Kind: KindCompliance}).Validate(); err != nil {
		t.Fatalf("compliance question refused: %v", err)
	}
	for _, bad := range []Request{{Kind: KindCompliance, Indicator: "203.0.113.1"}, {Kind: KindCompliance, Policy: "p"}, {Kind: "compliance2"}} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%+v: %v, want ErrInvalidRequest", bad, err)
		}
	}
}
