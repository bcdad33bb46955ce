package store

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// listFSM records every command applied to it.
type listFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(l.Data))
	return len(f.cmds)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(slices.Clone(f.cmds)), nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return nil
}

func (f *listFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

type listSnapshot []string

func (listSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (listSnapshot) Release()                             {}

func raftConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = "node-1"
	c.HeartbeatTimeout = 50 * time.Millisecond
	c.ElectionTimeout = 50 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.Logger = hclog.NewNullLogger()
	return c
}

// startRaft starts a single-node raft on s, bootstrapping it when the store
// is fresh, and waits until it leads.
func startRaft(t *testing.T, s *Store, fsm raft.FSM) *raft.Raft {
	t.Helper()
	conf := raftConfig()
	rs := s.RaftStore()
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("")
	has, err := raft.HasExistingState(rs, rs, snaps)
	if err != nil {
		t.Fatalf("HasExistingState: %v", err)
	}
	if !has {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(conf, rs, rs, snaps, trans, cfg); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	r, err := raft.NewRaft(conf, fsm, rs, rs, snaps, trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			r.Shutdown()
			t.Fatalf("no leader after 10 s; state %s", r.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

// TestRaftOnStore runs a real single-node raft on a RaftStore, restarts it
// from the same directory, and checks that the log, the term and the
// applied entries survive.
func TestRaftOnStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	fsm := &listFSM{}
	r := startRaft(t, s, fsm)
	var want []string
	for i := range 20 {
		cmd := fmt.Sprintf("cmd-%d", i)
		want = append(want, cmd)
		if err := r.Apply([]byte(cmd), 5*time.Second).Error(); err != nil {
			r.Shutdown()
			t.Fatalf("apply %s: %v", cmd, err)
		}
	}
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got := fsm.applied(); !slices.Equal(got, want) {
		t.Fatalf("FSM applied %v, want %v", got, want)
	}
	lastIndex := r.LastIndex()
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	term1, err := s.RaftStore().GetUint64([]byte("CurrentTerm"))
	if err != nil || term1 == 0 {
		t.Fatalf("CurrentTerm = %d, %v", term1, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, DefaultOptions(dir))
	rs := s.RaftStore()
	if term, err := rs.GetUint64([]byte("CurrentTerm")); err != nil || term != term1 {
		t.Fatalf("CurrentTerm after reopen = %d, %v; want %d", term, err, term1)
	}
	if li, err := rs.LastIndex(); err != nil || li < lastIndex {
		t.Fatalf("LastIndex after reopen = %d, %v; want at least %d", li, err, lastIndex)
	}
	var cmds []string
	first, _ := rs.FirstIndex()
	last, _ := rs.LastIndex()
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := rs.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		// The bootstrap configuration (index 1) is written without a
		// time; every entry the leader appended carries one.
		if i > 1 && l.AppendedAt.IsZero() {
			t.Fatalf("entry %d lost AppendedAt", i)
		}
		if l.Type == raft.LogCommand {
			cmds = append(cmds, string(l.Data))
		}
	}
	if !slices.Equal(cmds, want) {
		t.Fatalf("commands in the reopened log = %v, want %v", cmds, want)
	}

	// Raft restarts on the reopened store, replays the log into a fresh
	// FSM and moves to a later term.
	fsm2 := &listFSM{}
	r2 := startRaft(t, s, fsm2)
	defer func() {
		if err := r2.Shutdown().Error(); err != nil {
			t.Error(err)
		}
	}()
	if err := r2.Apply([]byte("after-restart"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := r2.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got, want := fsm2.applied(), append(want, "after-restart"); !slices.Equal(got, want) {
		t.Fatalf("FSM after restart applied %v, want %v", got, want)
	}
	if term2, _ := rs.GetUint64([]byte("CurrentTerm")); term2 <= term1 {
		t.Fatalf("term after restart = %d, want above %d", term2, term1)
	}
}

// TestRaftOnFreshInMemoryStore is the bug STACK.md warns of: NewRaft on a
// store that was never written must not fail on a missing stable key.
func TestRaftOnFreshInMemoryStore(t *testing.T) {
	s := openStore(t, Options{InMemory: true})
	r := startRaft(t, s, &listFSM{})
	if err := r.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
}
