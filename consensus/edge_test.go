package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus/certify"
	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
)

// edgeTopic joins n's host to the certified topic, its messages handed to
// n's consensus, and (publish) to the servers' topic, and starts n's
// publisher on both; st is nil without publish.
func edgeTopic(tb testing.TB, n *testNode, publish bool) (ct, st *gossip.Certified) {
	tb.Helper()
	c := n.c
	g, err := gossip.New(context.Background(), n.h, gossip.Options{
		Handler: gossip.HandlerFunc(func(context.Context, *intel.Envelope, peer.ID) error { return nil }),
		Roster:  c,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	ct, err = g.JoinCertified(gossip.CertifiedOptions{Handler: c.HandleCertified})
	if err != nil {
		tb.Fatal(err)
	}
	if publish {
		if st, err = g.JoinServerCerts(c.HandleServerCerts); err != nil {
			tb.Fatal(err)
		}
		if err := c.AttachCertified(ct, st); err != nil {
			tb.Fatal(err)
		}
	}
	return ct, st
}

// edgeMesh is a mesh of MaxVoters 3 and Standbys 1 (four servers) and
// the edges beyond, every node on the certified topic.
type edgeMesh struct {
	nservers int
	nodes    []*testNode // servers first
	topics   map[*testNode]*gossip.Certified
	stopics  map[*testNode]*gossip.Certified // the servers' topic, of the publishing nodes
}

func (m *edgeMesh) servers() []*testNode { return m.nodes[:m.nservers] }
func (m *edgeMesh) edges() []*testNode   { return m.nodes[m.nservers:] }

// newEdgeMesh forms a mesh of 4 servers and edges edges, on Badger
// (durable) or in memory, servers publishing when publish is set.
func newEdgeMesh(t testing.TB, edges int, durable, publish bool, opt func(*Config)) *edgeMesh {
	t.Helper()
	return newEdgeMeshOf(t, 3, 1, edges, durable, publish, opt)
}

// newEdgeMeshOf is newEdgeMesh with voters voters and standbys standbys.
func newEdgeMeshOf(t testing.TB, voters, standbys, edges int, durable, publish bool, opt func(*Config)) *edgeMesh {
	t.Helper()
	log := testLogger(t)
	m := &edgeMesh{nservers: voters + standbys, topics: map[*testNode]*gossip.Certified{}, stopics: map[*testNode]*gossip.Certified{}}
	cfg := func(c *Config) {
		c.MaxVoters, c.Standbys = voters, standbys
		c.EdgeSyncInterval = 20 * time.Millisecond
		opt(c)
	}
	i := 0
	m.nodes = formCluster(t, m.nservers+edges, func(founder bool, secret string) *testNode {
		var n *testNode
		if durable {
			n = newDurableNode(t, log, founder, secret, nil, cfg)
		} else {
			n = newTestNodeWith(t, log, founder, secret, cfg)
		}
		m.topics[n], m.stopics[n] = edgeTopic(t, n, publish && i < m.nservers)
		i++
		return n
	})
	m.connect(t)
	return m
}

// connect connects every node to every other (as the node's peer
// discovery would) and waits until every node sees every other in the
// certified topic.
func (m *edgeMesh) connect(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range m.nodes {
		for _, b := range m.nodes {
			if a != b {
				if err := a.h.Connect(ctx, b.info()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	waitFor(t, 30*time.Second, "every node in the certified topic of every other", func() bool {
		for _, a := range m.nodes {
			if len(m.topics[a].Peers()) != len(m.nodes)-1 {
				return false
			}
		}
		return true
	})
}

// waitEdgeState waits until edge's FSM is byte for byte every server's,
// at one chain head.
func waitEdgeState(t *testing.T, edge *testNode, servers []*testNode) certify.Anchor {
	t.Helper()
	head := waitSameHead(t, servers)
	waitFor(t, 30*time.Second, fmt.Sprintf("edge %s at the servers' head %d", shortID(edge.id()), head.Index), func() bool {
		h, err := edge.c.ChainHead()
		return err == nil && h.Index == head.Index && h.Hash == head.Hash
	})
	want := snapshotBytes(t, servers[0].c.fsm)
	if got := snapshotBytes(t, edge.c.fsm); !bytes.Equal(got, want) {
		t.Fatalf("edge %s's state (%d bytes) differs from the servers' (%d bytes)", shortID(edge.id()), len(got), len(want))
	}
	now := time.Now()
	if got, want := edge.c.Policies(now), servers[0].c.Policies(now); !samePolicies(got, want) {
		t.Fatalf("edge policies %d, servers' %d", len(got), len(want))
	}
	return head
}

// raftServers are the IDs of the leader's raft configuration.
func raftServers(t *testing.T, nodes []*testNode) []string {
	t.Helper()
	l := waitLeader(t, nodes)
	f := l.c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	return ids
}

// A mesh of three voters, one standby and two edges on Badger: the
// edges are on the roster and in no raft configuration; what the servers
// commit reaches them over the certified topic and is applied, to the
// same bytes; an edge proposes through a server; every node names each
// member's kind.
func TestEdgesApplyCertifiedLog(t *testing.T) {
	m := newEdgeMesh(t, 2, true, true, func(*Config) {})
	servers := raftServers(t, m.nodes)
	if len(servers) != 4 {
		t.Fatalf("raft configuration of %d servers, want 4", len(servers))
	}
	for _, e := range m.edges() {
		if slices.Contains(servers, e.id()) {
			t.Fatalf("edge %s is in the raft configuration", shortID(e.id()))
		}
		if !e.c.IsEdge() || e.c.Kind() != KindEdge {
			t.Fatalf("edge %s: IsEdge %v, kind %s", shortID(e.id()), e.c.IsEdge(), e.c.Kind())
		}
	}
	commitSome(t, m.servers(), m.nodes[1], 1, 5)
	for _, e := range m.edges() {
		waitEdgeState(t, e, m.servers())
	}

	// An edge proposes: a server forwards it to the leader.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	edge := m.edges()[0]
	if err := edge.operate(ctx, blockOp(t, "198.51.100.77", time.Hour)); err != nil {
		t.Fatalf("propose through an edge: %v", err)
	}
	for _, e := range m.edges() {
		waitEdgeState(t, e, m.servers())
	}

	kinds := map[Kind]int{}
	for _, n := range m.nodes {
		k := map[Kind]int{}
		for _, ms := range n.c.Members() {
			k[ms.Kind]++
		}
		if k[KindServer] != 3 || k[KindStandby] != 1 || k[KindEdge] != 2 {
			t.Fatalf("%s sees kinds %v, want 3 servers, 1 standby, 2 edges", shortID(n.id()), k)
		}
		kinds[n.c.Kind()]++
	}
	if kinds[KindServer] != 3 || kinds[KindStandby] != 1 || kinds[KindEdge] != 2 {
		t.Fatalf("nodes' own kinds %v", kinds)
	}
	for _, e := range m.edges() {
		st, ok := e.c.Edge()
		if !ok || len(st.Refused) != 0 && st.Refused[certify.ReasonOld]+st.Refused[certify.ReasonDuplicate] == 0 {
			t.Fatalf("edge %s: %+v", shortID(e.id()), st)
		}
		for r := range st.Refused {
			if !ignorable(r) {
				t.Errorf("edge %s refused honest input: %v", shortID(e.id()), st.Refused)
			}
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(e.c.EdgeCollector())
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		applied := -1.0
		for _, mf := range mfs {
			if mf.GetName() == "meshward_edge_applied_index" {
				applied = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if applied < float64(st.Applied) || applied == 0 {
			t.Errorf("edge %s exports applied index %v, its edge %d", shortID(e.id()), applied, st.Applied)
		}
	}
}

// publishOn publishes m on n's certified topic.
func publishOn(t *testing.T, ct *gossip.Certified, m certify.Message) {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ct.PublishCertified(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// seen is how many messages a topic handled (taken or refused).
func seen(ct *gossip.Certified) uint64 {
	n := ct.Accepted()
	for _, v := range ct.Refused() {
		n += v
	}
	return n
}

// headCerts are the certificates of voters' heads.
func headCerts(t *testing.T, voters ...*testNode) []certify.Cert {
	t.Helper()
	var out []certify.Cert
	for _, v := range voters {
		c, err := v.c.CertifyHead()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// Entries and certificates reach an edge only through the certified
// topic (the servers publish nothing of their own here; the test
// publishes from a server's host): reordered entries are applied in
// order, a missing one is fetched from a voter, a replay is refused as
// old and counted, and an entry forged and certified by one compromised
// voter (a real voter's key) is never applied: the honest entries that
// follow are refused beside it, the honest majority's certificates
// disown it, it is dropped, counted under the certify reasons, and the
// honest chain is fetched and applied.
func TestEdgeRefusesForgeriesOnTopic(t *testing.T) {
	m := newEdgeMesh(t, 1, false, false, func(*Config) {})
	edge, servers := m.edges()[0], m.servers()
	head := waitEdgeState(t, edge, servers)
	// From here on the edge asks for entries only when it knows of a gap.
	edge.c.edgePoll.Store(int64(time.Hour))
	var voters []*testNode
	for _, s := range servers {
		if head.Voters.Contains(s.id()) {
			voters = append(voters, s)
		}
	}
	if len(voters) != 3 {
		t.Fatalf("%d voters", len(voters))
	}
	evil, via := voters[2], m.topics[servers[0]]
	topic := m.topics[edge]
	deliver := func(from *gossip.Certified, msg certify.Message) {
		t.Helper()
		before := seen(topic)
		publishOn(t, from, msg)
		waitFor(t, 30*time.Second, "the edge to handle the message", func() bool { return seen(topic) > before })
	}

	// Reordered: the entries of three commits, last first, then two
	// voters' certificates.
	commitSome(t, servers, servers[1], 1, 2)
	h1 := waitSameHead(t, servers)
	es, ok := voters[0].c.ChainEntries(head.Index+1, 1<<20)
	if !ok || len(es) < 3 {
		t.Fatalf("entries after %d: %d, %v", head.Index, len(es), ok)
	}
	reordered := certify.Message{Entries: slices.Clone(es), Certs: headCerts(t, voters[0], voters[1])}
	slices.Reverse(reordered.Entries)
	deliver(via, reordered)
	waitEdgeState(t, edge, servers)
	if a := edge.c.edge.Load().e.Applied(); a.Index != h1.Index {
		t.Fatalf("edge at %d, head %d", a.Index, h1.Index)
	}

	// Missing: one entry left out; the edge fetches it from a voter.
	fetches := edge.c.edgeFetches.Load()
	commitSome(t, servers, servers[2], 2, 2)
	h2 := waitSameHead(t, servers)
	es2, _ := voters[0].c.ChainEntries(h1.Index+1, 1<<20)
	if len(es2) < 3 {
		t.Fatalf("%d entries", len(es2))
	}
	holey := slices.Delete(slices.Clone(es2), 1, 2)
	deliver(via, certify.Message{Entries: holey, Certs: headCerts(t, voters[0], voters[1])})
	waitEdgeState(t, edge, servers)
	if edge.c.edgeFetches.Load() == fetches {
		t.Fatal("the missing entry was not fetched")
	}

	// Replayed: the first message again is old news.
	counts := edge.c.edge.Load().e.Counts()
	deliver(via, reordered)
	if got := edge.c.edge.Load().e.Counts()[certify.ReasonOld]; got < counts[certify.ReasonOld]+uint64(len(es)+2) {
		t.Fatalf("replay: old %d, was %d, want %d more", got, counts[certify.ReasonOld], len(es)+2)
	}
	if topic.Refused()[certify.ReasonOld] == 0 {
		t.Fatalf("the topic counted no replay: %v", topic.Refused())
	}
	if a := edge.c.edge.Load().e.Applied(); a.Index != h2.Index {
		t.Fatalf("edge at %d after the replay, head %d", a.Index, h2.Index)
	}

	// Forged by one compromised voter: an operator allow of 0.0.0.0/0
	// as the next entry, certified with that voter's real key.
	forged := certify.Entry{Index: h2.Index + 1, Term: h2.Term, Prev: h2.Index, Type: raft.LogCommand,
		Data: append([]byte{byte(CmdOperator)}, []byte(`{"op":"allow","indicator":"0.0.0.0/0"}`)...)}
	ct, err := certify.SignCert(evil.edKey(t), evil.c.MeshID(), forged.Index, forged.Term, certify.Link(h2.Hash, &forged))
	if err != nil {
		t.Fatal(err)
	}
	deliver(m.topics[evil], certify.Message{Entries: []certify.Entry{forged}, Certs: []certify.Cert{ct}})
	if a := edge.c.edge.Load().e.Applied(); a.Index != h2.Index {
		t.Fatalf("the forged entry certified by one voter of three was applied: edge at %d", a.Index)
	}
	// The honest chain goes on; its entries and the honest majority's
	// certificates arrive after the forgery.
	commitSome(t, servers, servers[0], 3, 2)
	h3 := waitSameHead(t, servers)
	honest, _ := voters[0].c.ChainEntries(h2.Index+1, 1<<20)
	deliver(via, certify.Message{Entries: honest, Certs: headCerts(t, voters[0], voters[1])})
	got := waitEdgeState(t, edge, servers)
	if got.Hash != h3.Hash {
		t.Fatalf("edge on %s, the honest head %s", got.Hash, h3.Hash)
	}
	// The honest entry after the forged one takes its index
	// (conflicting_entry) or, when raft put an entry the FSM never sees
	// there, links past it (bad_link: both dropped); either way the
	// forged entry is dropped (discarded, or with the bad link).
	cs := edge.c.edge.Load().e.Counts()
	clash := cs[certify.ReasonConflictingEntry] + cs[certify.ReasonBadLink]
	if clash == 0 || cs[certify.ReasonDiscarded]+cs[certify.ReasonBadLink] == 0 {
		t.Fatalf("counts %v: want the honest entry refused beside the forged one and the forged entry dropped", cs)
	}
	if r := topic.Refused(); r[certify.ReasonConflictingEntry]+r[certify.ReasonBadLink] == 0 {
		t.Fatalf("the topic did not count the clash: %v", r)
	}
	for _, p := range edge.c.Policies(time.Now()) {
		if p.Indicator.Value == "0.0.0.0/0" {
			t.Fatalf("the forged allow is in force on the edge: %+v", p)
		}
	}

	// Garbage is refused by the first validator, the publisher's own.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := via.PublishCertified(ctx, []byte{9, 9, 9}); err == nil {
		t.Fatal("a malformed message was published")
	}
	if via.Refused()[certify.ReasonMalformed] != 1 {
		t.Fatalf("server's topic refusals %v", via.Refused())
	}
}

// An edge that was down resumes from what it persisted, before it hears
// anything, and catches up from the entries the servers still keep; down
// longer than the servers keep entries (eight here), it catches up from a
// snapshot a majority of the voters certified.
func TestEdgeCatchesUpAfterDowntime(t *testing.T) {
	m := newEdgeMesh(t, 1, false, true, func(c *Config) { c.ChainRecentEntries = 8 })
	edge, servers := m.edges()[0], m.servers()
	commitSome(t, servers, servers[0], 1, 2)
	before := waitEdgeState(t, edge, servers)

	down := func() {
		t.Helper()
		edge.stop(t)
	}
	up := func() uint64 {
		t.Helper()
		edge.restart(t, servers)
		if !edge.c.IsEdge() {
			t.Fatal("the restarted edge did not resume as an edge")
		}
		resumed := edge.c.edge.Load().e.Applied().Index
		m.topics[edge], _ = edgeTopic(t, edge, false)
		m.connect(t)
		return resumed
	}

	// Down for a few entries: the servers still keep them.
	down()
	commitSome(t, servers, servers[1], 2, 1)
	if got := up(); got < before.Index {
		t.Fatalf("resumed at %d, it had applied %d", got, before.Index)
	}
	waitEdgeState(t, edge, servers)
	if n := edge.c.edgeSnapshots.Load(); n != 0 {
		t.Fatalf("caught up from %d snapshots, want the entries", n)
	}
	if edge.c.edgeFetches.Load() == 0 {
		t.Fatal("no entries fetched")
	}

	// Down for longer than the servers keep entries.
	down()
	commitSome(t, servers, servers[2], 3, 12)
	h := waitSameHead(t, servers)
	if _, ok := servers[0].c.ChainEntries(before.Index+1, 1); ok {
		t.Fatalf("the servers still keep the entries after %d", before.Index)
	}
	up()
	if got := waitEdgeState(t, edge, servers); got.Index < h.Index {
		t.Fatalf("edge at %d, head %d", got.Index, h.Index)
	}
	if n := edge.c.edgeSnapshots.Load(); n != 1 {
		t.Fatalf("caught up from %d snapshots, want 1", n)
	}
}

// When a server leaves and no standby is left to replace it, the leader
// makes the edge a standby: raft drives its FSM from then on, from the
// state it had applied as an edge, and it ends with the servers' state.
func TestEdgePromotedToServerKeepsState(t *testing.T) {
	m := newEdgeMesh(t, 1, false, true, func(*Config) {})
	edge, servers := m.edges()[0], m.servers()
	commitSome(t, servers, servers[0], 1, 3)
	before := waitEdgeState(t, edge, servers)

	var leaver *testNode
	for _, s := range servers {
		if before.Voters.Contains(s.id()) && !s.c.IsLeader() {
			leaver = s
			break
		}
	}
	// While the mesh formed, a joiner may have been admitted as an edge
	// and made a standby at once (its servers were full an instant):
	// count only what the leave causes.
	rest := without(servers, leaver)
	var earlier uint64
	for _, s := range rest {
		earlier += s.c.edgePromotions.Load()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leaver.c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the edge in the raft configuration", func() bool {
		return !edge.c.IsEdge() && edge.c.Kind() != KindEdge
	})
	if h, err := edge.c.ChainHead(); err != nil || h.Index < before.Index {
		t.Fatalf("the promoted edge's head %d (%v), it had applied %d", h.Index, err, before.Index)
	}
	all := append(slices.Clone(rest), edge)
	waitFor(t, 60*time.Second, "three voters and a standby, the former edge among them", func() bool {
		ids := raftServers(t, all)
		return len(ids) == 4 && slices.Contains(ids, edge.id()) && !slices.Contains(ids, leaver.id())
	})
	commitSome(t, rest, rest[0], 2, 2)
	head := waitSameHead(t, all)
	if want, got := snapshotBytes(t, rest[0].c.fsm), snapshotBytes(t, edge.c.fsm); !bytes.Equal(got, want) {
		t.Fatalf("the promoted edge's state (%d bytes) differs from the servers' (%d bytes) at %d", len(got), len(want), head.Index)
	}
	promotions := uint64(0)
	for _, s := range rest {
		promotions += s.c.edgePromotions.Load()
	}
	if promotions-earlier != 1 {
		t.Fatalf("%d edges made standbys after the leave, want 1", promotions-earlier)
	}
}

// A voter dies and its standby takes its place: with no standby left,
// the leader makes the edge one, and it follows the log through raft.
func TestEdgeReplacesLostStandby(t *testing.T) {
	m := newEdgeMesh(t, 1, false, true, func(c *Config) { c.DeadVoterTimeout = time.Second })
	edge, servers := m.edges()[0], m.servers()
	before := waitEdgeState(t, edge, servers)
	var dead *testNode
	for _, s := range servers {
		if before.Voters.Contains(s.id()) && !s.c.IsLeader() {
			dead = s
			break
		}
	}
	dead.stop(t)
	rest := without(servers, dead)
	all := append(slices.Clone(rest), edge)
	waitFor(t, 60*time.Second, "three live voters and the edge a server", func() bool {
		l := leaderOf(rest)
		if l == nil {
			return false
		}
		live := 0
		for _, ms := range l.c.Members() {
			if ms.Suffrage == SuffrageVoter && ms.ID != dead.id() {
				live++
			}
		}
		return live == 3 && !edge.c.IsEdge() && slices.Contains(raftServers(t, all), edge.id())
	})
	commitSome(t, rest, rest[0], 2, 2)
	waitSameHead(t, all)
	if want, got := snapshotBytes(t, rest[0].c.fsm), snapshotBytes(t, edge.c.fsm); !bytes.Equal(got, want) {
		t.Fatalf("the former edge's state (%d bytes) differs from the servers' (%d bytes)", len(got), len(want))
	}
}

// A server certifies its head only as a voter in force there: a
// standby's certificate would be refused by every edge (not_voter), so
// it signs none, while each voter does.
func TestOnlyVotersAtHeadCertify(t *testing.T) {
	m := newEdgeMesh(t, 1, false, false, func(*Config) {})
	servers := m.servers()
	head := waitSameHead(t, servers)
	standbys := 0
	for _, s := range servers {
		_, err := s.c.CertifyHead()
		switch voter := head.Voters.Contains(s.id()); {
		case voter && err != nil:
			t.Errorf("voter %s: %v", shortID(s.id()), err)
		case !voter:
			standbys++
			if !errors.Is(err, ErrNotVoterAtHead) {
				t.Errorf("standby %s certified its head: %v, want ErrNotVoterAtHead", shortID(s.id()), err)
			}
		}
	}
	if standbys != 1 {
		t.Fatalf("%d standbys among %d servers, want 1", standbys, len(servers))
	}
}

// A peer that is not a member asking for a certified snapshot gets the
// refused status, nothing of the state, and is counted not_member.
func TestSnapshotProtocolRefusesStrangers(t *testing.T) {
	log := testLogger(t)
	nodes := formCluster(t, 1, func(founder bool, secret string) *testNode {
		return newTestNodeWith(t, log, founder, secret, func(*Config) {})
	})
	server := nodes[0]
	stranger := newTestHost(t, newKey(t), mustGater(t))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := stranger.Connect(ctx, server.info()); err != nil {
		t.Fatal(err)
	}
	before := server.c.TransportRefusals().Count(string(SnapshotProtocol), RefusedNotMember)
	s, err := stranger.NewStream(ctx, server.h.ID(), SnapshotProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var req [snapRequestSize]byte
	req[0], req[1] = snapRequestVersion, snapKindState
	if _, err := s.Write(req[:]); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	answer, _ := io.ReadAll(s)
	if len(answer) == 0 || answer[0] != snapStatusRefused || len(answer) > 9 {
		t.Fatalf("a stranger's request was answered %v, want the refused status alone", answer)
	}
	if got := server.c.TransportRefusals().Count(string(SnapshotProtocol), RefusedNotMember); got != before+1 {
		t.Fatalf("not_member refusals %d, want %d", got, before+1)
	}
}

// An edge asks the same voter first poll after poll, so that it holds a
// connection to one voter and not to each; it moves on only when that
// voter fails it, and edges start at different voters.
func TestEdgeSticksToOneVoter(t *testing.T) {
	var voters []string
	for range 5 {
		id, err := peer.IDFromPrivateKey(newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		voters = append(voters, id.String())
	}
	firsts := map[peer.ID]bool{}
	for range 20 {
		h := newTestHost(t, newKey(t), nil)
		r := &edgeRunner{c: &Consensus{h: h}, next: stickyStart(h.ID()), voters: certify.NewVoters(voters...)}
		first := r.servers()[0]
		for range 10 {
			if got := r.servers(); got[0] != first || len(got) != len(voters) {
				t.Fatalf("edge %s asks %v first, then %v", shortID(h.ID().String()), first, got[0])
			}
		}
		r.rotate()
		if got := r.servers()[0]; got == first {
			t.Fatalf("after a failure the edge still asks %v first", first)
		}
		firsts[first] = true
	}
	if len(firsts) < 3 {
		t.Errorf("20 edges start at %d of 5 voters, want them spread", len(firsts))
	}
}

// TestEdgePersistsOnItsTicksOnly: a running edge writes its state (the
// whole FSM, hundreds of kilobytes for a large roster) on its persist
// ticker and when it closes, never on the wakes between (sync ticks,
// certified messages that show a gap, configuration changes and
// retries). With no persist tick due in the test (an hour apart), the
// entries applied and the wakes leave nothing persisted past the state
// the edge started from.
func TestEdgePersistsOnItsTicksOnly(t *testing.T) {
	m := newEdgeMesh(t, 1, true, true, func(c *Config) { c.EdgePersistInterval = time.Hour })
	e := m.edges()[0]
	persisted := func() uint64 {
		metas, err := e.c.snaps.List()
		if err != nil {
			t.Fatal(err)
		}
		var idx uint64
		for _, s := range metas {
			idx = max(idx, s.Index)
		}
		return idx
	}
	before := persisted()
	commitSome(t, m.servers(), m.nodes[1], 1, 5)
	waitEdgeState(t, e, m.servers())
	r := e.c.edge.Load()
	applied := r.e.Applied().Index
	// Wake the edge as certified messages and gaps do (its sync ticks
	// wake it every 20ms too). Once a wake is taken, the loop has
	// finished the pass of the one before it.
	for range 3 {
		r.wake()
		waitFor(t, 10*time.Second, "the edge to take its wake", func() bool { return len(r.kick) == 0 })
	}
	if got := persisted(); got != before || got >= applied {
		t.Fatalf("the edge persisted its state at index %d (from %d; applied %d) with no tick due", got, before, applied)
	}
}
