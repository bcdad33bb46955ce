package store

import (
	"context"
	"fmt"
	"time"
)

// Level 0 of the tree: Badger compacts it from l0Tables tables, and
// stalls memtable flushes (so writes, once the memtables are full) while
// it holds l0StallTables.
const (
	l0Tables      = 2
	l0StallTables = 8
	// compactL0Tables is how many level-0 tables the store's own
	// compaction (Options.CompactInterval) lets build up before it
	// compacts: half the stall, so that a store writing several
	// memtables between two looks does not stall.
	compactL0Tables = l0StallTables / 2
)

// compactors is how many compactors Badger runs for opts: none when the
// store compacts on its own (Badger refuses one).
func compactors(opts Options) int {
	if opts.CompactInterval > 0 {
		return 0
	}
	return numCompactors
}

// compactLoop looks at level 0 every interval, and compacts when it
// holds compactL0Tables tables, until ctx ends.
func (s *Store) compactLoop(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		if _, err := s.compactL0(); err != nil {
			s.log.Warn("compact the store", "err", err)
		}
	})
}

// every calls f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// compactL0 flattens the tree when level 0 holds compactL0Tables tables
// or more, and reports whether it did. Badger's Flatten is its one way
// to compact from outside: with no compactors of Badger's to stop, it
// compacts level 0 into the base level, then each level into the next
// until one holds every table (a tree flattened before takes one step:
// level 0 into the level below), from the calling goroutine, while
// writes go on. Close waits for it (Start's group).
func (s *Store) compactL0() (bool, error) {
	levels := s.db.Levels()
	if len(levels) == 0 || levels[0].NumTables < compactL0Tables {
		return false, nil
	}
	start := time.Now()
	if err := s.db.Flatten(1); err != nil {
		return false, fmt.Errorf("flatten %d level-0 tables: %w", levels[0].NumTables, err)
	}
	s.log.Debug("compacted the store", "l0_tables", levels[0].NumTables, "took", time.Since(start))
	return true, nil
}
