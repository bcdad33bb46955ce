package consensus

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/consensus/certify/chainsync"
)

// An edge that is no raft peer catches up by asking two servers, over
// real libp2p streams, for the entries it misses: each answer carries the
// server's certificate, and two make the majority.
func TestCertifiedEdgeCatchesUpOverStreams(t *testing.T) {
	nodes := byzantineCluster(t)
	commitSome(t, nodes, nodes[0], 1, 5)
	head := waitSameHead(t, nodes)

	edgeHost := newTestHost(t, newKey(t), mustGater(t))
	stranger := newTestHost(t, newKey(t), mustGater(t))
	allow := func(p peer.ID) bool { return p == edgeHost.ID() }
	var servers []*chainsync.Server
	for _, n := range nodes[:2] {
		s, err := chainsync.NewServer(t.Context(), n.h, n.c, allow)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		servers = append(servers, s)
		for _, h := range []interface {
			Connect(context.Context, peer.AddrInfo) error
		}{edgeHost, stranger} {
			if err := h.Connect(t.Context(), n.info()); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// Someone the servers do not admit is refused, and counted.
	if _, err := chainsync.Fetch(ctx, stranger, nodes[0].h.ID(), 1, 10); !errors.Is(err, chainsync.ErrRefused) {
		t.Fatalf("stranger's fetch: %v", err)
	}
	if n := servers[0].Refused()[chainsync.ReasonNotAllowed]; n != 1 {
		t.Fatalf("refusals %v", servers[0].Refused())
	}
	// A malformed request: the stream is reset, the refusal counted.
	st, err := edgeHost.NewStream(ctx, nodes[1].h.ID(), chainsync.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write([]byte{9, 9, 9})
	_ = st.CloseWrite()
	if _, err := io.ReadAll(st); err == nil {
		t.Fatal("a malformed request was answered")
	}
	_ = st.Close()
	if n := servers[1].Refused()[chainsync.ReasonMalformed]; n != 1 {
		t.Fatalf("refusals %v", servers[1].Refused())
	}

	edge := newCertEdge(t, nodes[0].c.MeshID(), nodes[0].id())
	for i := 0; edge.e.Applied().Index < head.Index; i++ {
		if i > 20 {
			t.Fatalf("no progress: edge at %d, head %d, counts %v", edge.e.Applied().Index, head.Index, edge.e.Counts())
		}
		from := edge.e.Applied().Index + 1
		if g, ok := edge.e.NextGap(); ok {
			from = g.From
		}
		// Few entries at a time, from each server in turn.
		m, err := chainsync.Fetch(ctx, edgeHost, nodes[i%2].h.ID(), from, 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range offerAll(edge.e, &m) {
			t.Logf("offer: %v", err)
		}
	}
	if a := edge.e.Applied(); a.Hash != head.Hash {
		t.Fatalf("edge at %d (%s), head %d (%s)", a.Index, a.Hash, head.Index, head.Hash)
	}
	edge.sameStateAsVoters(t, nodes)
}
