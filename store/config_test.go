package store

import (
	"context"
	"testing"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if got := DefaultConfig().Retention; got != 7*24*time.Hour {
		t.Fatalf("default retention = %s", got)
	}
	for _, r := range []time.Duration{0, -time.Second} {
		fields := confcheck.Fields(Config{Retention: r}.Validate())
		if len(fields) != 1 || fields[0].Field != "retention" || fields[0].Msg != "must be positive" {
			t.Errorf("retention %s: %+v", r, fields)
		}
	}
}

// TestDurableStoresSyncWrites fails if the options every durable store
// opens with (the envelope and sighting store and, in the same database,
// the Raft log and stable store) stop syncing each commit: without it an
// acknowledged write survives a process crash but not a power loss.
func TestDurableStoresSyncWrites(t *testing.T) {
	s := openStore(t, DefaultOptions(t.TempDir()))
	if !s.SyncWrites() || !s.db.Opts().SyncWrites {
		t.Fatal("a store opened with DefaultOptions does not sync its writes")
	}
	if r := s.RaftStore(); r.s != s || !r.s.SyncWrites() {
		t.Fatal("the raft log and stable store do not sync their writes")
	}
	unsynced := DefaultOptions(t.TempDir())
	unsynced.SyncWrites = false
	if openStore(t, unsynced).SyncWrites() {
		t.Fatal("SyncWrites reports true for a store opened without synced writes")
	}
}

// TestStartRunsCollectorUntilClose checks the collector's lifecycle: Start
// runs it once however often it is called, Close stops and waits for it,
// and Start after Close or in memory starts nothing.
func TestStartRunsCollectorUntilClose(t *testing.T) {
	opts := DefaultOptions(t.TempDir())
	opts.GCInterval = time.Millisecond
	opts.Logger = testLogger(t)
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.bg != nil {
		t.Fatal("Open started the collector")
	}
	s.Start(context.Background())
	g := s.bg
	if g == nil {
		t.Fatal("Start did not start the collector")
	}
	s.Start(context.Background())
	if s.bg != g {
		t.Fatal("a second Start started another collector")
	}
	time.Sleep(5 * time.Millisecond) // let it run a few times
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if g.Context().Err() == nil {
		t.Fatal("Close left the collector running")
	}
	s.Start(context.Background())
	if s.bg != g {
		t.Fatal("Start after Close started a collector")
	}

	mem := openStore(t, Options{InMemory: true, GCInterval: time.Millisecond})
	mem.Start(context.Background())
	if mem.bg != nil {
		t.Fatal("Start ran the collector in memory")
	}
}
