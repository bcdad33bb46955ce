package consensus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/consensus/certify"
	"github.com/meshward/meshward/intel"
)

// certEdge is an edge as a member that is no raft peer would run it: its
// own FSM, fed only what a majority of the voters certifies.
type certEdge struct {
	f *fsm
	e *certify.Edge
}

func newCertEdge(tb testing.TB, mesh, founder string) *certEdge {
	tb.Helper()
	ce := &certEdge{f: newFSM(nil)}
	e, err := certify.NewEdge(certify.Config{
		Mesh:   mesh,
		Anchor: certify.Genesis(founder),
		Apply: func(es []certify.Entry) error {
			logs := make([]*raft.Log, len(es))
			for i, en := range es {
				logs[i] = &raft.Log{Index: en.Index, Term: en.Term, Type: en.Type, Data: en.Data}
			}
			ce.f.ApplyBatch(logs)
			return nil
		},
		Restore: func(b []byte) error { return ce.f.Restore(io.NopCloser(bytes.NewReader(b))) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	ce.e = e
	return ce
}

// feed offers the entries from index from on, as served by src, and
// every voter's certificate of its head.
func (ce *certEdge) feed(tb testing.TB, src *testNode, from uint64, voters []*testNode) {
	tb.Helper()
	ce.entries(tb, src, from)
	ce.certs(tb, voters)
}

// entries offers the entries from index from on, as served by src,
// through the wire encoding; every one must be accepted.
func (ce *certEdge) entries(tb testing.TB, src *testNode, from uint64) {
	tb.Helper()
	es, ok := src.c.ChainEntries(from, 1<<20)
	if !ok {
		tb.Fatalf("%s no longer keeps the entries from %d", shortID(src.id()), from)
	}
	for _, en := range es {
		b, err := en.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		var got certify.Entry
		if err := got.UnmarshalBinary(b); err != nil {
			tb.Fatal(err)
		}
		if err := ce.e.AddEntry(got); err != nil {
			tb.Fatalf("entry %d: %v", en.Index, err)
		}
	}
}

// certs offers every voter's certificate of its head, through the wire
// encoding.
func (ce *certEdge) certs(tb testing.TB, voters []*testNode) {
	tb.Helper()
	for _, v := range voters {
		ct, err := v.c.CertifyHead()
		if err != nil {
			tb.Fatal(err)
		}
		b, err := ct.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		var got certify.Cert
		if err := got.UnmarshalBinary(b); err != nil {
			tb.Fatal(err)
		}
		// Once a majority's certificates applied the head, the rest
		// are old news.
		if err := ce.e.AddCert(got); err != nil && certify.ReasonOf(err) != certify.ReasonOld {
			tb.Fatalf("certificate of %s: %v", shortID(v.id()), err)
		}
	}
}

// waitSameHead waits until every node's chain head is the same, and
// returns it.
func waitSameHead(tb testing.TB, nodes []*testNode) certify.Anchor {
	tb.Helper()
	var head certify.Anchor
	waitFor(tb, 30*time.Second, "every node to reach the same chain head", func() bool {
		h0, err := nodes[0].c.ChainHead()
		if err != nil {
			return false
		}
		for _, n := range nodes[1:] {
			h, err := n.c.ChainHead()
			if err != nil || h.Index != h0.Index || h.Hash != h0.Hash {
				return false
			}
		}
		head = h0
		return true
	})
	return head
}

// sameStateAsVoters fails unless the edge's FSM snapshot is byte for
// byte each voter's (chain head included) and the policies agree.
func (ce *certEdge) sameStateAsVoters(tb testing.TB, voters []*testNode) {
	tb.Helper()
	got := snapshotBytes(tb, ce.f)
	for _, v := range voters {
		if want := snapshotBytes(tb, v.c.fsm); !bytes.Equal(got, want) {
			tb.Fatalf("the edge's state (%d bytes) differs from %s's (%d bytes)", len(got), shortID(v.id()), len(want))
		}
	}
	now := time.Now()
	if got, want := ce.f.activePolicies(now), voters[0].c.Policies(now); len(want) == 0 || !samePolicies(got, want) {
		tb.Fatalf("edge policies %d, voters' %d", len(got), len(want))
	}
}

// commitSome commits n operator blocks through node and one proven
// automatic block, through the normal API.
func commitSome(tb *testing.T, nodes []*testNode, through *testNode, tag, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		if err := through.operate(ctx, blockOp(tb, fmt.Sprintf("198.51.%d.%d", tag, i+1), time.Hour)); err != nil {
			tb.Fatal(err)
		}
	}
	mustProposeBlock(tb, through, fmt.Sprintf("203.0.%d.1", tag))
}

func TestCertifiedEdgeFollowsCluster(t *testing.T) {
	edgeFollowsCluster(t, byzantineCluster(t))
}

// The same on voters that keep their log in Badger on disk.
func TestCertifiedEdgeFollowsDurableCluster(t *testing.T) {
	nodes := newDurableCluster(t, 3, nil, func(*Config) {})
	waitFor(t, 30*time.Second, "every node to hold the mesh ID", func() bool {
		for _, n := range nodes {
			if n.c.MeshID() == "" {
				return false
			}
		}
		return true
	})
	edgeFollowsCluster(t, nodes)
}

// edgeFollowsCluster commits policies through the normal API and checks
// that an edge fed the cluster's entries and certificates applies them
// only once a majority certifies, and ends with the voters' state.
func edgeFollowsCluster(t *testing.T, nodes []*testNode) {
	t.Helper()
	commitSome(t, nodes, followerOf(nodes), 1, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nodes[2].operate(ctx, intel.OperatorCommand{Op: intel.OpProtect, Prefix: "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	head := waitSameHead(t, nodes)

	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	// Entries alone, or with one voter's word, apply nothing.
	edge.entries(t, nodes[1], 1)
	edge.certs(t, nodes[1:2])
	// Nothing: the founder was the only voter up to the first
	// configuration change, and later one voter of three is no majority.
	if a := edge.e.Applied(); a.Index != 0 || len(edge.f.activePolicies(time.Now())) != 0 {
		t.Fatalf("one voter's certificate applied up to %d of %d, %d policies", a.Index, head.Index, len(edge.f.activePolicies(time.Now())))
	}
	edge.certs(t, []*testNode{nodes[0], nodes[2]})
	if a := edge.e.Applied(); a.Index != head.Index || a.Hash != head.Hash {
		t.Fatalf("edge applied up to %d (%s), voters at %d (%s); counts %v", a.Index, a.Hash, head.Index, head.Hash, edge.e.Counts())
	}
	if !edge.e.Applied().Voters.Equal(head.Voters) || len(head.Voters) != 3 {
		t.Fatalf("edge's voters %v, the cluster's %v", edge.e.Applied().Voters, head.Voters)
	}
	edge.sameStateAsVoters(t, nodes)
	if cs := edge.e.Counts(); len(cs) != 0 && (len(cs) != 1 || cs[certify.ReasonOld] == 0) {
		t.Errorf("honest input refused: %v", cs)
	}

	// More entries: the edge goes on from where it stands.
	commitSome(t, nodes, nodes[1], 2, 3)
	waitSameHead(t, nodes)
	edge.feed(t, nodes[0], head.Index+1, nodes[:2])
	edge.sameStateAsVoters(t, nodes)
}

// An edge that was away installs a snapshot certified by a majority of
// the voters (each produces the same bytes at the same head), then goes
// on with the entries.
func TestCertifiedEdgeCatchesUpFromSnapshot(t *testing.T) {
	nodes := byzantineCluster(t)
	commitSome(t, nodes, nodes[1], 1, 3)
	head := waitSameHead(t, nodes)
	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	edge.feed(t, nodes[0], 1, nodes)
	if edge.e.Applied().Index != head.Index {
		t.Fatalf("edge at %d, voters at %d", edge.e.Applied().Index, head.Index)
	}

	// Away while more is committed.
	commitSome(t, nodes, nodes[2], 2, 6)
	head = waitSameHead(t, nodes)
	var ms []certify.Manifest
	var state []byte
	for _, n := range nodes {
		m, b, err := n.c.CertifiedSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if m.Index != head.Index || m.Chain != head.Hash {
			t.Fatalf("manifest of %s at %d, head at %d", shortID(n.id()), m.Index, head.Index)
		}
		if state != nil && !bytes.Equal(b, state) {
			t.Fatalf("%s's snapshot bytes differ from another voter's at the same head", shortID(n.id()))
		}
		state = b
		ms = append(ms, m)
	}
	// One voter's manifest is not enough.
	if err := edge.e.Install(ms[0], state); certify.ReasonOf(err) != certify.ReasonMinority {
		t.Fatalf("install with one signature: %v", err)
	}
	m := ms[0]
	m.Sigs = append(m.Sigs, ms[2].Sigs...)
	wire, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got certify.Manifest
	if err := got.UnmarshalBinary(wire); err != nil {
		t.Fatal(err)
	}
	if err := edge.e.Install(got, state); err != nil {
		t.Fatal(err)
	}
	edge.sameStateAsVoters(t, nodes)

	commitSome(t, nodes, nodes[0], 3, 2)
	waitSameHead(t, nodes)
	edge.feed(t, nodes[1], head.Index+1, nodes[1:])
	edge.sameStateAsVoters(t, nodes)
}

// A voter restarted from its snapshot and log keeps the chain: its
// certificates still count.
func TestCertifiedChainSurvivesRestart(t *testing.T) {
	nodes := newClusterWith(t, 3, func(c *Config) { c.SnapshotThreshold, c.TrailingLogs = 4, 2 })
	waitFor(t, 30*time.Second, "the mesh ID", func() bool { return nodes[2].c.MeshID() != "" })
	commitSome(t, nodes, nodes[0], 1, 6)
	waitSameHead(t, nodes)
	f := followerOf(nodes)
	if err := f.c.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	f.stop(t)
	f.restart(t, nodes)
	commitSome(t, nodes, without(nodes, f)[0], 2, 3)
	head := waitSameHead(t, nodes)
	if s := f.c.Stats()["last_snapshot_index"]; s == "" || s == "0" {
		t.Fatalf("restarted node's last_snapshot_index %q: not restored from a snapshot", s)
	}
	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	other := without(nodes, f)[0]
	edge.entries(t, other, 1)
	// The restarted voter and one other make the majority at the head.
	edge.certs(t, []*testNode{f, other})
	if a := edge.e.Applied(); a.Index != head.Index {
		t.Fatalf("edge at %d, head %d: counts %v", a.Index, head.Index, edge.e.Counts())
	}
	edge.sameStateAsVoters(t, nodes)
}

// The voter set changes under the edge: a voter leaves, the standby
// non-voter is promoted; the edge follows both changes and ends with the
// cluster's voter set and state.
func TestCertifiedEdgeAcrossVoterChange(t *testing.T) {
	nodes := newClusterWith(t, 4, func(c *Config) { c.MaxVoters = 3 })
	waitFor(t, 30*time.Second, "the mesh ID", func() bool { return nodes[3].c.MeshID() != "" })
	commitSome(t, nodes, nodes[1], 1, 2)
	before := waitSameHead(t, nodes)
	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	edge.feed(t, nodes[0], 1, voterNodes(nodes, before.Voters))

	var leaver *testNode
	for _, n := range nodes {
		if before.Voters.Contains(n.id()) && !n.c.IsLeader() {
			leaver = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leaver.c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	rest := without(nodes, leaver)
	var after certify.Anchor
	waitFor(t, 30*time.Second, "three voters again, without the leaver", func() bool {
		after = waitSameHead(t, rest)
		return len(after.Voters) == 3 && !after.Voters.Contains(leaver.id())
	})
	commitSome(t, rest, rest[0], 2, 2)
	after = waitSameHead(t, rest)
	if after.Voters.Equal(before.Voters) {
		t.Fatal("the voter set did not change")
	}
	edge.feed(t, rest[0], before.Index+1, voterNodes(rest, after.Voters))
	if a := edge.e.Applied(); a.Index != after.Index || !a.Voters.Equal(after.Voters) {
		t.Fatalf("edge at %d with voters %v; cluster at %d with %v; counts %v", a.Index, a.Voters, after.Index, after.Voters, edge.e.Counts())
	}
	edge.sameStateAsVoters(t, rest)
}

// voterNodes are the nodes in voters.
func voterNodes(nodes []*testNode, voters certify.Voters) []*testNode {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *testNode) bool { return !voters.Contains(n.id()) })
}

// Every voter runs a publisher (the leader's sends the entries too);
// their messages, through the wire encoding, are all an edge needs to
// apply what the cluster commits.
func TestCertifiedPublishersFeedEdge(t *testing.T) {
	nodes := byzantineCluster(t)
	msgs := make(chan []byte, 256)
	done := make(chan struct{})
	for _, n := range nodes {
		p, err := certify.StartPublisher(t.Context(), n.c, certify.PublisherConfig{
			Entries: n.c.IsLeader,
			Publish: func(m certify.Message) {
				b, err := m.MarshalBinary()
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case msgs <- b:
				case <-done:
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
	}
	t.Cleanup(func() { close(done) }) // runs before the publishers' Close
	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	for round := range 3 {
		commitSome(t, nodes, nodes[round], round+1, 3)
		head := waitSameHead(t, nodes)
		for edge.e.Applied().Index < head.Index {
			select {
			case b := <-msgs:
				var m certify.Message
				if err := m.UnmarshalBinary(b); err != nil {
					t.Fatal(err)
				}
				for _, err := range offerAll(edge.e, &m) {
					if r := certify.ReasonOf(err); r != certify.ReasonOld && r != certify.ReasonDuplicate {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: no message for 30s; edge at %d, head %d", round, edge.e.Applied().Index, head.Index)
			}
		}
		if a := edge.e.Applied(); a.Index != head.Index || a.Hash != head.Hash {
			t.Fatalf("round %d: edge at %d (%s), head %d (%s)", round, a.Index, a.Hash, head.Index, head.Hash)
		}
		edge.sameStateAsVoters(t, nodes)
	}
}

// offerAll offers a message's parts and returns every refusal.
func offerAll(e *certify.Edge, m *certify.Message) []error {
	var errs []error
	for _, en := range m.Entries {
		if err := e.AddEntry(en); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range m.Certs {
		if err := e.AddCert(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// A compromised voter (a cluster node's real key) forges an entry of the
// real chain and signs the forged chain; its entries reach the edge
// first. Nothing forged is applied: the honest majority's certificates
// are held as evidence against it, the forged entries are dropped, and
// the honest ones, fetched again, are applied.
func TestCertifiedEdgeRefusesCompromisedVoter(t *testing.T) {
	nodes := byzantineCluster(t)
	commitSome(t, nodes, nodes[0], 1, 4)
	head := waitSameHead(t, nodes)
	honest, _ := nodes[0].c.ChainEntries(1, 1<<20)
	evil := nodes[2]

	// The forgery: the last policy command's data replaced by an
	// operator command of the attacker's choosing (its signature does not
	// matter: the edge never gets to apply it).
	forged := slices.Clone(honest)
	last := len(forged) - 1
	for forged[last].Type != raft.LogCommand {
		last--
	}
	forged[last].Data = append([]byte{byte(CmdOperator)}, []byte(`{"op":"allow","indicator":"0.0.0.0/0"}`)...)
	h := certify.GenesisHash
	for i := range forged {
		h = certify.Link(h, &forged[i])
	}
	ct, err := certify.SignCert(evil.edKey(t), evil.c.MeshID(), head.Index, head.Term, h)
	if err != nil {
		t.Fatal(err)
	}
	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	for _, en := range forged {
		if err := edge.e.AddEntry(en); err != nil {
			t.Fatal(err)
		}
	}
	if err := edge.e.AddCert(ct); err != nil {
		t.Fatal(err)
	}
	// The founder's certificate contradicts the forged one; the founder
	// alone is the voter set of the first entries, so the forged entries
	// are disowned and dropped at once. The second honest certificate
	// then waits for the entries that make its signer a voter.
	for i, v := range nodes[:2] {
		hc, err := v.c.CertifyHead()
		if err != nil {
			t.Fatal(err)
		}
		if hc.Index != ct.Index {
			t.Fatalf("the head moved from %d to %d", ct.Index, hc.Index)
		}
		err = edge.e.AddCert(hc)
		if r := certify.ReasonOf(err); (i == 0 && r != certify.ReasonEquivocation) || (i == 1 && err != nil) {
			t.Fatalf("honest certificate of %s beside the forged one: %v", shortID(v.id()), err)
		}
	}
	// The entries before the forged one are the honest chain's, and
	// may be applied; nothing from the forged one on.
	if a := edge.e.Applied(); a.Index >= forged[last].Index {
		t.Fatalf("applied up to %d, the forged entry is at %d", a.Index, forged[last].Index)
	}
	cs := edge.e.Counts()
	if cs[certify.ReasonChainMismatch] == 0 || cs[certify.ReasonDiscarded] == 0 {
		t.Fatalf("counts %v: want the mismatch and the forged entries discarded", cs)
	}
	if ev := edge.e.Evidence(); len(ev) != 1 || ev[0].A.SignerID() != evil.id() || ev[0].B.SignerID() != nodes[0].id() {
		t.Fatalf("evidence %+v", ev)
	}
	g, ok := edge.e.NextGap()
	if !ok || g.To != head.Index {
		t.Fatalf("gap %+v %v, want up to %d", g, ok, head.Index)
	}
	edge.entries(t, nodes[1], g.From)
	if a := edge.e.Applied(); a.Index != head.Index || a.Hash != head.Hash {
		t.Fatalf("edge at %d, head %d; counts %v", a.Index, head.Index, edge.e.Counts())
	}
	edge.sameStateAsVoters(t, nodes)
	// The waiting certificate, once its signer was known a voter, was
	// held against the forged one too.
	if ev := edge.e.Evidence(); len(ev) != 2 || ev[1].A.SignerID() != evil.id() || ev[1].B.SignerID() != nodes[1].id() {
		t.Fatalf("evidence %+v", ev)
	}
}
