package consensus

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/consensus/certify"
)

// chainLogs are raft entries as raft hands them to the FSM: the bootstrap
// configuration, then commands (some refused by the FSM: they are in the
// chain all the same, as every replica applies them), with holes where
// raft's own entries were.
func chainLogs() []*raft.Log {
	cfg := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "node-a", Address: "a"}}})
	logs := []*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: cfg}}
	for i := uint64(3); i < 12; i += 1 + i%2 {
		logs = append(logs, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte{0xff, byte(i)}})
	}
	return logs
}

func TestCertChainFollowsApply(t *testing.T) {
	f := newFSM(nil)
	logs := chainLogs()
	f.ApplyBatch(logs[:3])
	f.ApplyBatch(logs[3:])
	h, prev := certify.GenesisHash, uint64(0)
	for _, l := range logs {
		h = certify.Link(h, &certify.Entry{Index: l.Index, Term: l.Term, Prev: prev, Type: l.Type, Data: l.Data})
		prev = l.Index
	}
	head := f.chain.head
	if head.Index != prev || head.Hash != h || head.Term != 2 || !head.Voters.Equal(certify.NewVoters("node-a")) {
		t.Fatalf("head %+v, want index %d hash %s", head, prev, h)
	}
	es, ok := f.chain.entries(0, 100)
	if !ok || len(es) != len(logs) || es[1].Prev != 1 || es[2].Prev != es[1].Index {
		t.Fatalf("entries %v %+v", ok, es)
	}
	if es, ok := f.chain.entries(logs[4].Index, 2); !ok || len(es) != 2 || es[0].Index != logs[4].Index {
		t.Fatalf("entries from %d: %v %+v", logs[4].Index, ok, es)
	}
	if es, ok := f.chain.entries(prev+1, 10); !ok || len(es) != 0 {
		t.Fatalf("entries past the head: %v %+v", ok, es)
	}
	// Trimmed to the newest three: what is gone is reported gone.
	f.chain.trim(2, 1<<20)
	if len(f.chain.recent) != 2 {
		t.Fatalf("%d kept after trimming to 2 (+1/4)", len(f.chain.recent))
	}
	kept := f.chain.recent[0]
	if _, ok := f.chain.entries(kept.Prev, 10); ok {
		t.Fatal("a trimmed entry reported available")
	}
	if es, ok := f.chain.entries(kept.Prev+1, 10); !ok || len(es) != 2 {
		t.Fatalf("entries after the trimmed ones: %v %+v", ok, es)
	}
	f.chain.trim(100, 2) // by bytes: the newest stays
	if len(f.chain.recent) != 1 || f.chain.bytes != 2 {
		t.Fatalf("%d entries, %d bytes kept", len(f.chain.recent), f.chain.bytes)
	}
}

func TestCertChainInSnapshot(t *testing.T) {
	// A snapshot of nothing applied yet keeps the chain at its start.
	e := newFSM(nil)
	if err := e.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, newFSM(nil))))); err != nil {
		t.Fatal(err)
	}
	if e.chain.unknown {
		t.Fatal("the chain of an empty snapshot is unknown")
	}

	f := newFSM(nil)
	f.ApplyBatch(chainLogs())
	snap := snapshotBytes(t, f)
	g := newFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if g.chain.head.Index != f.chain.head.Index || g.chain.head.Hash != f.chain.head.Hash || !g.chain.head.Voters.Equal(f.chain.head.Voters) {
		t.Fatalf("restored head %+v, want %+v", g.chain.head, f.chain.head)
	}
	// After the restore the chain goes on as on the original.
	next := []*raft.Log{{Index: 20, Term: 3, Type: raft.LogCommand, Data: []byte{0xff}}}
	f.ApplyBatch(next)
	g.ApplyBatch(next)
	if g.chain.head.Hash != f.chain.head.Hash {
		t.Fatal("chains differ after the restore")
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("snapshots differ after the restore")
	}

	// A snapshot from before the chain: the chain is unknown here, and
	// stays so (it cannot be rebuilt from the state).
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st := s.(*fsmSnapshot).state()
	st.Version, st.Chain = 2, nil
	old, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	h := newFSM(nil)
	if err := h.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	h.ApplyBatch([]*raft.Log{{Index: 21, Term: 3, Type: raft.LogCommand, Data: []byte{0xff}}})
	if !h.chain.unknown {
		t.Fatalf("chain after an old snapshot: %+v", h.chain.head)
	}
	if _, ok := h.chain.entries(0, 10); ok {
		t.Fatal("entries served from an unknown chain")
	}
}
