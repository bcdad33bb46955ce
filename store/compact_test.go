package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A store opened with CompactInterval runs none of Badger's compactors,
// and compacts on its own: writing memtable after memtable (until level
// 0 was compacted four times), level 0 comes down each time it reaches
// compactL0Tables without the writer doing anything, and never reaches
// the stall; everything reads back.
func TestCompactIntervalKeepsLevelZeroBelowStall(t *testing.T) {
	if def := openStore(t, Options{Dir: t.TempDir()}); def.db.Opts().NumCompactors != numCompactors {
		t.Fatalf("default store runs %d compactors, want %d", def.db.Opts().NumCompactors, numCompactors)
	}
	// Values of 64 KiB kept in the tree (not the value log), so that
	// every 4 MiB written fills a memtable.
	s := openStore(t, Options{Dir: t.TempDir(), CompactInterval: 10 * time.Millisecond, valueThreshold: 512 << 10})
	if n := s.db.Opts().NumCompactors; n != 0 {
		t.Fatalf("store with CompactInterval runs %d of Badger's compactors, want 0", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)

	l0 := func() int { return s.db.Levels()[0].NumTables }
	const valueSize = 64 << 10
	const wantCompactions = 4
	n := 64 * int(defaultMemTableSize/valueSize) // at most
	value := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, valueSize) }
	key := func(i int) []byte { return fmt.Appendf(nil, "compact/%08d", (i*7919)%n) }
	maxL0, compactions, written := 0, 0, 0
	for i := 0; i < n && compactions < wantCompactions; i++ {
		written++
		if err := s.update(func(txn *badger.Txn) error { return txn.Set(key(i), value(i)) }); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got := l0()
		maxL0 = max(maxL0, got)
		if got < compactL0Tables {
			continue
		}
		// The store's compaction must bring level 0 down by itself.
		deadline := time.Now().Add(30 * time.Second)
		for got = l0(); got >= compactL0Tables; got = l0() {
			if time.Now().After(deadline) {
				t.Fatalf("after %d writes level 0 stays at %d tables: nothing compacts it", i+1, got)
			}
			time.Sleep(5 * time.Millisecond)
		}
		compactions++
	}
	if maxL0 >= l0StallTables {
		t.Errorf("level 0 reached %d tables, the stall is %d", maxL0, l0StallTables)
	}
	if compactions < wantCompactions {
		t.Errorf("level 0 was compacted %d times over %d writes, want %d (write more)", compactions, written, wantCompactions)
	}
	for _, i := range []int{0, written / 2, written - 1} {
		err := s.db.View(func(txn *badger.Txn) error {
			it, err := txn.Get(key(i))
			if err != nil {
				return err
			}
			return it.Value(func(v []byte) error {
				if !bytes.Equal(v, value(i)) {
					return fmt.Errorf("value of write %d differs", i)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatalf("read back write %d: %v", i, err)
		}
	}
	t.Logf("%d writes of %d KiB, level 0 compacted %d times, at most %d tables", written, valueSize>>10, compactions, maxL0)
}
