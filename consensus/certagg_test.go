package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshward/meshward/consensus/certify"
	"github.com/meshward/meshward/consensus/certify/chainsync"
)

// aggTotals sums the publishers' counts over nodes.
func aggTotals(nodes []*testNode) certify.PublisherStats {
	var s certify.PublisherStats
	for _, n := range nodes {
		a := n.c.Aggregation()
		s.Messages += a.Messages
		s.Entries += a.Entries
		s.Servers += a.Servers
		s.Fallbacks += a.Fallbacks
	}
	return s
}

// chainCount is how many chain entries lie after index from up to to.
func chainCount(t *testing.T, n *testNode, from, to uint64) int {
	t.Helper()
	es, ok := n.c.ChainEntries(from+1, 1<<20)
	if !ok {
		t.Fatalf("entries after %d no longer kept", from)
	}
	k := 0
	for _, e := range es {
		if e.Index <= to {
			k++
		}
	}
	return k
}

// With the voters' certificates aggregated on the servers' topic, the
// leader publishes about one message per committed batch on the
// certified topic (every voter published its own before: as many per
// batch as there are voters), each edge applies every entry to the
// servers' state, and no voter needs to fall back on publishing its own.
func TestCertifiedOneMessagePerBatch(t *testing.T) {
	t.Run("3 voters", func(t *testing.T) { oneMessagePerBatch(t, newEdgeMesh(t, 2, false, true, func(*Config) {})) })
	t.Run("5 voters", func(t *testing.T) {
		oneMessagePerBatch(t, newEdgeMeshOf(t, 5, 1, 2, false, true, func(*Config) {}))
	})
}

func oneMessagePerBatch(t *testing.T, m *edgeMesh) {
	t.Helper()
	servers := m.servers()
	for _, e := range m.edges() {
		waitEdgeState(t, e, servers)
	}
	h0 := waitSameHead(t, servers)
	before, seen0 := aggTotals(servers), seen(m.topics[m.edges()[0]])
	const batches = 12
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range batches {
		// One operator block at a time, each applied on every edge
		// before the next: a batch of its own.
		if err := servers[1].operate(ctx, blockOp(t, fmt.Sprintf("198.51.7.%d", i+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, e := range m.edges() {
			waitEdgeState(t, e, servers)
		}
	}
	h1 := waitSameHead(t, servers)
	after := aggTotals(servers)
	entries := chainCount(t, servers[0], h0.Index, h1.Index)
	msgs := after.Messages - before.Messages
	perEntry := float64(msgs) / float64(entries)
	t.Logf("%d chain entries, %d messages on the certified topic (%.2f per entry; the edge handled %d), %d certificates to the servers, %d fallbacks",
		entries, msgs, perEntry, seen(m.topics[m.edges()[0]])-seen0, after.Servers-before.Servers, after.Fallbacks-before.Fallbacks)
	if entries < batches {
		t.Fatalf("%d chain entries for %d batches", entries, batches)
	}
	// One message per batch, and at most one follow-up when a majority's
	// certificates took longer than the leader waits (a loaded machine):
	// fewer than two per entry, where each of the voters published its
	// own (three or five per entry).
	if perEntry >= 2 {
		t.Fatalf("%.2f messages per committed entry on the certified topic, want about 1", perEntry)
	}
	if n := after.Fallbacks - before.Fallbacks; n != 0 {
		t.Fatalf("%d fallbacks on the normal path", n)
	}

	// A burst, as while a mesh forms: blocks proposed at once through
	// every server. Batches carry several entries; still no fallback,
	// and no more messages than entries.
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(servers))
	for i, s := range servers {
		for j := range 2 {
			op := blockOp(t, fmt.Sprintf("198.51.8.%d", 10*i+j+1), time.Hour)
			wg.Go(func() {
				if err := s.operate(ctx, op); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, e := range m.edges() {
		waitEdgeState(t, e, servers)
	}
	h2 := waitSameHead(t, servers)
	burst := aggTotals(servers)
	entries = chainCount(t, servers[0], h1.Index, h2.Index)
	msgs = burst.Messages - after.Messages
	t.Logf("burst: %d chain entries, %d messages on the certified topic, %d fallbacks", entries, msgs, burst.Fallbacks-after.Fallbacks)
	if msgs > uint64(entries) || burst.Fallbacks != after.Fallbacks {
		t.Fatalf("burst: %d messages for %d entries, %d fallbacks", msgs, entries, burst.Fallbacks-after.Fallbacks)
	}
	for _, e := range m.edges() {
		st, _ := e.c.Edge()
		for r := range st.Refused {
			if !ignorable(r) {
				t.Errorf("edge %s refused honest input: %v", shortID(e.id()), st.Refused)
			}
		}
	}
}

// A leader that withholds (publishes nothing to the edges): the other
// voters see their certificates uncovered on the certified topic and
// publish them there themselves (counted), the edges learn of the gap
// and fetch the entries, and any server, a standby too, answers a
// catch-up with a majority's certificates.
func TestCertifiedEdgesApplyWhenLeaderWithholds(t *testing.T) {
	m := newEdgeMesh(t, 1, false, true, func(*Config) {})
	servers, edge := m.servers(), m.edges()[0]
	waitEdgeState(t, edge, servers)
	// From here on the edge asks for entries only when it knows of a gap.
	edge.c.edgePoll.Store(int64(time.Hour))
	for _, s := range servers {
		s.c.agg.withhold.Store(true)
	}
	before := aggTotals(servers)
	commitSome(t, servers, servers[1], 3, 3)
	head := waitEdgeState(t, edge, servers)
	if n := aggTotals(servers).Fallbacks - before.Fallbacks; n == 0 {
		t.Fatal("the edge applied, yet no voter fell back on publishing its certificate")
	}

	// Catch-up from the standby, which signs nothing: its answer
	// carries the voters' certificates it heard, a majority of them.
	var standby *testNode
	for _, s := range servers {
		if !head.Voters.Contains(s.id()) {
			standby = s
		}
	}
	if standby == nil {
		t.Fatal("no standby")
	}
	pid, err := peer.Decode(standby.id())
	if err != nil {
		t.Fatal(err)
	}
	var msg certify.Message
	waitFor(t, 30*time.Second, "the standby to hold a majority's certificates of the head", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msg, err = chainsync.Fetch(ctx, edge.h, pid, head.Index, 16)
		return err == nil && certify.Covered(msg.Certs, head.Voters) >= head.Index
	})
	for _, c := range msg.Certs {
		if !head.Voters.Contains(c.SignerID()) || !c.Verify() {
			t.Fatalf("the standby answered a certificate of %s", shortID(c.SignerID()))
		}
	}
}

// Forgeries on the servers' topic are refused, named and counted, and
// never held: a voter's certificate handed on by another voter, a bad
// signature, another mesh, a hash off the chain signed with a real
// voter's key, and a certificate of a server that is no voter.
func TestServerCertsRefusesForgeries(t *testing.T) {
	m := newEdgeMesh(t, 1, false, true, func(*Config) {})
	servers := m.servers()
	head := waitEdgeState(t, m.edges()[0], servers)
	var voters []*testNode
	var standby *testNode
	for _, s := range servers {
		if head.Voters.Contains(s.id()) {
			voters = append(voters, s)
		} else {
			standby = s
		}
	}
	a, b := voters[0], voters[1]
	ca := headCerts(t, a)[0]
	cb := headCerts(t, b)[0]
	badSig := ca
	badSig.Sig = append([]byte(nil), ca.Sig...)
	badSig.Sig[0] ^= 1
	otherMesh, err := certify.SignCert(a.edKey(t), "another-mesh", ca.Index, ca.Term, ca.Hash)
	if err != nil {
		t.Fatal(err)
	}
	wrongHash := ca.Hash
	wrongHash[0] ^= 1
	offChain, err := certify.SignCert(a.edKey(t), a.c.MeshID(), ca.Index, ca.Term, wrongHash)
	if err != nil {
		t.Fatal(err)
	}
	standbyCert, err := certify.SignCert(standby.edKey(t), a.c.MeshID(), ca.Index, ca.Term, ca.Hash)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		via    *testNode
		cert   certify.Cert
		reason string
	}{
		{a, cb, ReasonNotAuthor},
		{a, badSig, certify.ReasonBadSignature},
		{a, otherMesh, certify.ReasonWrongMesh},
		{a, offChain, certify.ReasonChainMismatch},
		{standby, standbyCert, certify.ReasonNotVoter},
	} {
		b, err := (&certify.Message{Certs: []certify.Cert{tc.cert}}).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// Through the topic: the publishing node's own validator is the
		// first to refuse it.
		st := m.stopics[tc.via]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = st.PublishCertified(ctx, b)
		cancel()
		if err == nil {
			t.Fatalf("%s: published", tc.reason)
		}
		if n := st.Refused()[tc.reason]; n == 0 {
			t.Fatalf("%s: the topic counted %v", tc.reason, st.Refused())
		}
		// And as a receiving server takes it from the author.
		recv := voters[2]
		from, err := peer.Decode(tc.via.id())
		if err != nil {
			t.Fatal(err)
		}
		was := recv.c.Aggregation().Refused[tc.reason]
		err = recv.c.HandleServerCerts(context.Background(), from, b)
		var v interface{ Reason() string }
		if err == nil || !errors.As(err, &v) || v.Reason() != tc.reason {
			t.Fatalf("%s: HandleServerCerts returned %v", tc.reason, err)
		}
		if got := recv.c.Aggregation().Refused[tc.reason]; got != was+1 {
			t.Fatalf("%s: counted %d, was %d", tc.reason, got, was)
		}
		for _, c := range recv.c.HeldCerts(head.Index) {
			if string(c.Sig) == string(tc.cert.Sig) && tc.reason != ReasonNotAuthor {
				t.Fatalf("%s: the forged certificate is held", tc.reason)
			}
		}
	}
	// The refusal shows in the metrics.
	if got := metricValue(t, voters[2].c, "meshward_servercerts_refused_total", ReasonNotAuthor); got < 1 {
		t.Fatalf("meshward_servercerts_refused_total{reason=%q} = %v", ReasonNotAuthor, got)
	}
}

// metricValue is the value of n's edge collector's metric name with the
// reason label (-1: absent).
func metricValue(t *testing.T, c *Consensus, name, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.EdgeCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
