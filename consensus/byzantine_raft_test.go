package consensus

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/refusal"
)

// Attacks on the raft transport by a stranger: a libp2p peer that was
// never admitted speaks raft's own wire format (hashicorp/raft's
// NetworkTransport: the rpc type byte, then msgpack) on /meshward/raft/1 to
// a follower of a real three-node cluster. Each RPC must fail, change no
// FSM state and no term on any node, and be counted as
// not_in_configuration.

// dialLayer is the attacker's raft.StreamLayer: it only dials.
type dialLayer struct {
	h    host.Host
	once sync.Once
	done chan struct{}
}

func (d *dialLayer) Accept() (net.Conn, error) { <-d.done; return nil, net.ErrClosed }
func (d *dialLayer) Close() error              { d.once.Do(func() { close(d.done) }); return nil }
func (d *dialLayer) Addr() net.Addr            { return peerAddr(d.h.ID()) }

func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	id, err := peer.Decode(string(addr))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := d.h.NewStream(ctx, id, RaftProtocol)
	if err != nil {
		return nil, err
	}
	return newStreamConn(s), nil
}

// stranger is a never-admitted peer with raft's own transport.
type stranger struct {
	h     host.Host
	trans *raft.NetworkTransport
	hdr   raft.RPCHeader
}

func newStranger(t *testing.T) *stranger {
	t.Helper()
	h := newTestHost(t, newKey(t), nil)
	layer := &dialLayer{h: h, done: make(chan struct{})}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 1, Timeout: 5 * time.Second})
	t.Cleanup(func() { _ = trans.Close() })
	id := []byte(h.ID().String())
	return &stranger{h: h, trans: trans, hdr: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: id, Addr: id}}
}

func (s *stranger) reach(n *testNode) (raft.ServerID, raft.ServerAddress) {
	s.h.Peerstore().AddAddrs(n.h.ID(), n.h.Addrs(), peerstore.PermanentAddrTTL)
	return raft.ServerID(n.id()), raft.ServerAddress(n.id())
}

// nodeState is what an attack must not change on a node.
type nodeState struct {
	Term      string
	Roster    []Member
	Policies  []intel.Policy
	Protected []netip.Prefix
}

func stateOf(n *testNode, now time.Time) nodeState {
	return nodeState{
		Term:      n.c.raft.Stats()["term"],
		Roster:    n.c.Roster(),
		Policies:  n.c.Policies(now),
		Protected: n.c.Protected(),
	}
}

func statesOf(nodes []*testNode, now time.Time) []nodeState {
	out := make([]nodeState, len(nodes))
	for i, n := range nodes {
		out[i] = stateOf(n, now)
	}
	return out
}

// slowTiming makes spurious elections unlikely on a loaded machine, so
// that an unchanged term means the attack changed nothing.
func slowTiming(c *Config) {
	fastTiming(c)
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 2*time.Second, 2*time.Second, time.Second
}

const attackTerm = 1 << 40

func TestStrangerRaftRPCsRefused(t *testing.T) {
	nodes := newClusterWith(t, 3, slowTiming)
	f := followerOf(nodes)
	s := newStranger(t)
	id, addr := s.reach(f)
	now := time.Now()
	before := statesOf(nodes, now)

	lastIndex, _ := strconv.ParseUint(f.c.raft.Stats()["last_log_index"], 10, 64)
	lastTerm, _ := strconv.ParseUint(f.c.raft.Stats()["last_log_term"], 10, 64)
	admit, err := Command{Type: CmdAdmit, At: now.UTC(), Member: &Member{ID: s.h.ID().String(), Site: "stranger", Voter: true}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	snapshot := []byte(`{"members":[]}`)
	attacks := []struct {
		name string
		send func() error
	}{
		{"AppendEntries", func() error {
			var resp raft.AppendEntriesResponse
			return s.trans.AppendEntries(id, addr, &raft.AppendEntriesRequest{
				RPCHeader: s.hdr, Term: attackTerm, PrevLogEntry: lastIndex, PrevLogTerm: lastTerm,
				Entries:           []*raft.Log{{Index: lastIndex + 1, Term: attackTerm, Type: raft.LogCommand, Data: admit}},
				LeaderCommitIndex: lastIndex + 1,
			}, &resp)
		}},
		{"InstallSnapshot", func() error {
			var resp raft.InstallSnapshotResponse
			return s.trans.InstallSnapshot(id, addr, &raft.InstallSnapshotRequest{
				RPCHeader: s.hdr, SnapshotVersion: raft.SnapshotVersionMax, Term: attackTerm,
				LastLogIndex: lastIndex + 100, LastLogTerm: attackTerm, Size: int64(len(snapshot)),
			}, &resp, bytes.NewReader(snapshot))
		}},
		{"TimeoutNow", func() error {
			var resp raft.TimeoutNowResponse
			return s.trans.TimeoutNow(id, addr, &raft.TimeoutNowRequest{RPCHeader: s.hdr}, &resp)
		}},
	}
	refused := f.c.TransportRefusals()
	for i, a := range attacks {
		if err := a.send(); err == nil {
			t.Errorf("%s from a stranger: the follower answered", a.name)
		}
		want := uint64(i + 1)
		waitFor(t, 10*time.Second, a.name+" counted as not_in_configuration", func() bool {
			return refused.Count(string(RaftProtocol), RefusedNotInConfiguration) >= want
		})
	}
	// An accepted RPC would have changed the follower's term before it
	// answered; a refused one was reset before raft read a byte.
	after := statesOf(nodes, now)
	for i := range nodes {
		if !reflect.DeepEqual(before[i], after[i]) {
			t.Errorf("node %s changed: before %+v, after %+v", shortID(nodes[i].id()), before[i], after[i])
		}
	}
	for _, n := range nodes {
		if n.c.IsMember(s.h.ID().String()) || n.c.knownInConfig(s.h.ID().String()) {
			t.Errorf("stranger admitted on %s", shortID(n.id()))
		}
	}
}

// TestRaftGateJoining: a node in no configuration accepts raft streams
// only from the peers its join code named, once it has named any; a
// configured node only from servers of its configuration.
func TestRaftGateJoining(t *testing.T) {
	k := func() peer.ID {
		id, err := peer.IDFromPrivateKey(newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	leader, via, other := k(), k(), k()
	g := newRaftGate(nil)
	if r := g.admit(leader); r != RefusedStarting {
		t.Fatalf("before raft runs: %q, want %q", r, RefusedStarting)
	}
	g.set(raft.Configuration{})
	if r := g.admit(other); r != "" {
		t.Fatalf("joining, no join peer named yet: %q, want accepted", r)
	}
	g.allowJoin(via)
	g.allowJoin(leader)
	for p, want := range map[peer.ID]string{via: "", leader: "", other: RefusedNotJoinPeer} {
		if r := g.admit(p); r != want {
			t.Errorf("joining: admit(%s) = %q, want %q", shortID(p.String()), r, want)
		}
	}
	g.set(raft.Configuration{Servers: []raft.Server{{ID: raft.ServerID(leader.String()), Address: raft.ServerAddress(leader.String())}}})
	for p, want := range map[peer.ID]string{leader: "", via: RefusedNotInConfiguration, other: RefusedNotInConfiguration} {
		if r := g.admit(p); r != want {
			t.Errorf("configured: admit(%s) = %q, want %q", shortID(p.String()), r, want)
		}
	}
}

// TestRaftStreamsResetWhenPeerLeavesConfiguration: a peer's open raft
// stream is reset, and counted, once the peer is no longer a server of the
// configuration.
func TestRaftStreamsResetWhenPeerLeavesConfiguration(t *testing.T) {
	a, b := newTestHost(t, newKey(t), nil), newTestHost(t, newKey(t), nil)
	server := func(ids ...peer.ID) raft.Configuration {
		var conf raft.Configuration
		for _, id := range ids {
			conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(id.String()), Address: raft.ServerAddress(id.String())})
		}
		return conf
	}
	g := newRaftGate(refusal.New(nil))
	g.set(server(a.ID(), b.ID()))
	l := newStreamLayer(context.Background(), a, g, testLogger(t))
	defer l.closeAndWait()
	accepted := make(chan net.Conn, 1)
	go func() { // as raft's listener: accept until the layer closes
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	b.Peerstore().AddAddrs(a.ID(), a.Addrs(), peerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.NewStream(ctx, a.ID(), RaftProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-ctx.Done():
		t.Fatal("a server's raft stream was not accepted")
	}
	defer conn.Close()

	set := g.set(server(a.ID()))
	l.resetInbound(func(p peer.ID) bool { return g.allowed(set, p) })
	l.resetInbound(func(p peer.ID) bool { return g.allowed(set, p) }) // counted once
	if n := g.refused.Count(string(RaftProtocol), RefusedLeftConfiguration); n != 1 {
		t.Fatalf("left_configuration counted %d times, want 1", n)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ne net.Error
	if _, err := s.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stream of a peer that left the configuration is still open (read: %v)", err)
	}
}
