package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is a log store that counts the reads that reach it and
// can be made to fail its writes.
type countingStore struct {
	*raft.InmemStore
	gets int
	fail error
}

func (s *countingStore) GetLog(index uint64, l *raft.Log) error {
	s.gets++
	return s.InmemStore.GetLog(index, l)
}

func (s *countingStore) StoreLogs(logs []*raft.Log) error {
	if s.fail != nil {
		return s.fail
	}
	return s.InmemStore.StoreLogs(logs)
}

func entries(term uint64, from, to uint64, size int) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(make([]byte, 0, size), "%0*d", size, i)})
	}
	return ls
}

// getFrom reads index through c and reports whether the store was asked
// and the entry's term.
func getFrom(t *testing.T, c *logCache, s *countingStore, index uint64) (fromStore bool, term uint64, err error) {
	t.Helper()
	before := s.gets
	var l raft.Log
	err = c.GetLog(index, &l)
	if err == nil && l.Index != index {
		t.Fatalf("GetLog(%d) returned entry %d", index, l.Index)
	}
	return s.gets > before, l.Term, err
}

func TestLogCacheServesRecentEntries(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(s, 8, 1<<20)
	if err := c.StoreLogs(entries(1, 1, 20, 16)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		fromStore, term, err := getFrom(t, c, s, i)
		if err != nil || term != 1 {
			t.Fatalf("GetLog(%d) = term %d, %v", i, term, err)
		}
		// The last 8 entries are cached; older ones come from the store.
		if want := i <= 12; fromStore != want {
			t.Fatalf("GetLog(%d) read the store: %v, want %v", i, fromStore, want)
		}
	}
	if _, _, err := getFrom(t, c, s, 21); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(21) = %v, want ErrLogNotFound", err)
	}
}

func TestLogCacheBoundsBytes(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(s, 100, 1000)
	if err := c.StoreLogs(entries(1, 1, 10, 300)); err != nil {
		t.Fatal(err)
	}
	if c.bytes > 1000 {
		t.Fatalf("cache holds %d bytes, bound 1000", c.bytes)
	}
	for i := uint64(1); i <= 10; i++ {
		fromStore, _, err := getFrom(t, c, s, i)
		if err != nil {
			t.Fatal(err)
		}
		if want := i <= 7; fromStore != want {
			t.Fatalf("GetLog(%d) read the store: %v, want %v", i, fromStore, want)
		}
	}
	// One entry larger than the bound is still cached, alone.
	if err := c.StoreLogs(entries(1, 11, 11, 5000)); err != nil {
		t.Fatal(err)
	}
	if fromStore, _, _ := getFrom(t, c, s, 11); fromStore {
		t.Fatal("the newest entry was not cached")
	}
	if fromStore, _, _ := getFrom(t, c, s, 10); !fromStore {
		t.Fatal("an entry beyond the byte bound was still cached")
	}
}

// TestLogCacheFollowsTheStore checks that the cache never answers with an
// entry the store no longer holds or holds differently: after a
// conflicting suffix is overwritten, after DeleteRange at either end, and
// after a failed write.
func TestLogCacheFollowsTheStore(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(s, 64, 1<<20)
	if err := c.StoreLogs(entries(1, 1, 10, 8)); err != nil {
		t.Fatal(err)
	}

	// A new leader overwrites 6..10 with 6..7 of term 2 (raft deletes the
	// conflicting suffix first).
	if err := c.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := getFrom(t, c, s, 8); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(8) after DeleteRange(6, 10) = %v, want ErrLogNotFound", err)
	}
	if err := c.StoreLogs(entries(2, 6, 7, 8)); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[uint64]uint64{5: 1, 6: 2, 7: 2} {
		if fromStore, term, err := getFrom(t, c, s, i); err != nil || term != want || fromStore {
			t.Fatalf("GetLog(%d) = term %d, %v (from the store: %v); want term %d from the cache", i, term, err, fromStore, want)
		}
	}
	for _, i := range []uint64{8, 9, 10} {
		if _, _, err := getFrom(t, c, s, i); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) after the suffix was deleted = %v, want ErrLogNotFound", i, err)
		}
	}

	// Without a DeleteRange, an entry stored again at a cached index
	// replaces the cached one and everything after it.
	if err := c.StoreLogs(entries(3, 4, 4, 8)); err != nil {
		t.Fatal(err)
	}
	if _, term, _ := getFrom(t, c, s, 4); term != 3 {
		t.Fatalf("GetLog(4) = term %d after it was stored again in term 3", term)
	}
	if fromStore, _, _ := getFrom(t, c, s, 5); !fromStore {
		t.Fatal("GetLog(5) answered from the cache after 4 was replaced")
	}

	// Compaction deletes from the front.
	if err := c.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{1, 2} {
		if _, _, err := getFrom(t, c, s, i); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) after compaction = %v, want ErrLogNotFound", i, err)
		}
	}
	if fromStore, _, err := getFrom(t, c, s, 3); err != nil || fromStore {
		t.Fatalf("GetLog(3) after compaction: from the store %v, %v; want the cache", fromStore, err)
	}

	// A failed write caches nothing and forgets from its first index on.
	s.fail = errors.New("disk full")
	err := c.StoreLogs(entries(4, 3, 12, 8))
	if !errors.Is(err, s.fail) {
		t.Fatalf("StoreLogs on a failing store = %v, want the store's error", err)
	}
	for _, i := range []uint64{3, 11, 12} {
		if fromStore, _, _ := getFrom(t, c, s, i); !fromStore {
			t.Fatalf("GetLog(%d) answered from the cache after a failed write", i)
		}
	}
}

// TestLogCacheJumpsAhead checks a jump past the cached
// range (a follower that installed a snapshot): the cache starts over at
// the new index.
func TestLogCacheJumpsAhead(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(s, 64, 1<<20)
	if err := c.StoreLogs(entries(1, 1, 5, 8)); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(2, 100, 101, 8)); err != nil {
		t.Fatal(err)
	}
	if fromStore, term, err := getFrom(t, c, s, 100); err != nil || fromStore || term != 2 {
		t.Fatalf("GetLog(100) = term %d, %v, from the store %v", term, err, fromStore)
	}
	if fromStore, _, _ := getFrom(t, c, s, 5); !fromStore {
		t.Fatal("GetLog(5) answered from the cache after the jump")
	}
}
