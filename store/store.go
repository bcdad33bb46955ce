package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/meshward/meshward/internal/routine"
)

// Errors callers branch on.
var (
	// ErrNotFound is returned when a requested record is not stored.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store closed")
)

// Memory profile. Several nodes run in one process in tests, so the
// defaults stay small (STACK.md, "Edge profile").
const (
	defaultMemTableSize = 4 << 20
	minMemTableSize     = 4 << 20
	numMemtables        = 2
	blockCacheSize      = 16 << 20 // with encryption only
	indexCacheSize      = 8 << 20
	baseTableSize       = 512 << 10
	numCompactors       = 2

	// valueLogFileSize is the size at which Badger starts a new value
	// log file. Badger writes the newest file through a shared mapping
	// and syncs that mapping on every commit, and how much a commit
	// costs grows with what the file holds: with 40 MB in it (the raft
	// log's bulk commands of a million policies; entries of 128 bytes
	// and more live in the value log, see valueThreshold) a one-entry
	// commit took twice as long as on an empty file, while up to 15 MB
	// cost nothing measurable. Files of 16 MiB keep a commit's cost
	// flat however much the log holds; the collector (Start) reclaims
	// whole files.
	valueLogFileSize = 16 << 20

	// valueThreshold is the size from which a value is kept in the value
	// log, the LSM tree holding only its key and a 12-byte pointer. An
	// envelope's header and signature alone are 118 bytes, so every
	// envelope with a payload of ten bytes or more is written once, to
	// the value log, and not again by each memtable flush and
	// compaction; index entries and high-water marks stay in the tree.
	// Badger marks each stored value with where it is, so records
	// written under another threshold read as before. What deletions
	// leave in the value log is reclaimed by the collector (Start). At
	// most 15% of a memtable.
	valueThreshold = 128

	// DefaultGCInterval is how often the value log is garbage-collected
	// when Options.GCInterval is zero.
	DefaultGCInterval = 5 * time.Minute
	gcDiscardRatio    = 0.5

	// maxConflictRetries bounds how often a write transaction that lost a
	// race with a concurrent writer is retried.
	maxConflictRetries = 16
)

// Options configures a Store.
type Options struct {
	// Dir is the data directory for Badger; ignored when InMemory.
	Dir string
	// InMemory keeps everything in memory; for tests.
	InMemory bool
	// SyncWrites fsyncs every commit before it returns (true in
	// DefaultOptions). Without it a commit survives a process crash but
	// not a power loss: a store that acknowledges writes (envelopes, the
	// raft log) must keep it on.
	SyncWrites bool
	// Logger receives Badger's messages (its info messages at debug
	// level) and the store's own. nil discards them.
	Logger *slog.Logger
	// MemTableSize is the size of each of Badger's two memtables. Zero
	// means 4 MiB, the least: the active memtable's arena (about 5 MiB
	// at 4) and what was written of its mapped write-ahead file are
	// resident, and a flush builds its table in a buffer of twice the
	// size; larger tables flush less often. Values below 4 MiB are
	// raised to 4 MiB.
	MemTableSize int64
	// GCInterval is how often the value log is garbage-collected; zero
	// means DefaultGCInterval, negative disables the collector. It runs
	// from Start to Close, never in memory.
	GCInterval time.Duration
	// EncryptionKey, when set, is the AES-256 key (KeySize bytes) the
	// store is encrypted with (Badger encrypts tables and value log with
	// data keys kept under it). Opening an encrypted store without it, or
	// with another key, or an unencrypted store with one, fails with
	// ErrKeyRequired, ErrWrongKey or ErrNotEncrypted: never a new store.
	EncryptionKey []byte
	// EncryptionKeyRotation is how often a new data key is made; zero
	// means DefaultKeyRotation.
	EncryptionKeyRotation time.Duration
	// CompactInterval, when positive, opens Badger without its
	// compactors and has the store compact on its own instead: from
	// Start to Close it looks at level 0 every CompactInterval and
	// flattens the tree when level 0 holds compactL0Tables tables
	// (compact.go). Badger's compactors each wake every 50 ms for as
	// long as the store is open; hundreds of stores in one process (the
	// testnet's sim profile) spent a sixth of their idle CPU in them.
	// Flattening rewrites the tree into one level, which suits small
	// stores that write little; zero (the default) keeps Badger's.
	// A store opened with it must be started.
	CompactInterval time.Duration

	// valueThreshold and valueLogFileSize, when set (in tests), replace
	// the profile's: an older store's layout, or value log files small
	// enough to fill.
	valueThreshold   int64
	valueLogFileSize int64
}

// DefaultOptions returns the options of a durable on-disk store in dir.
func DefaultOptions(dir string) Options {
	return Options{Dir: dir, SyncWrites: true}
}

// Store is Meshward's persistent state. Its methods are safe for
// concurrent use.
type Store struct {
	db  *badger.DB
	log *slog.Logger
	raw *RaftStore

	// seqMu serialises NextSeq so that the counter never conflicts with
	// itself.
	seqMu sync.Mutex

	// mu guards closed; ops counts operations in flight, which Close
	// waits for before it closes the database.
	mu     sync.RWMutex
	closed bool
	ops    sync.WaitGroup

	// group is the envelope committer (group.go), from Open to Close.
	group *committer

	// gcInterval is how often Start's collector runs; 0 never.
	gcInterval time.Duration
	// compactInterval is how often Start's compaction looks at level 0;
	// 0 never (Badger's compactors run).
	compactInterval time.Duration
	bgMu            sync.Mutex
	bg              *routine.Group // the value-log collector and compaction, once started

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store described by opts. Its one
// goroutine is the envelope committer (group.go), which Close stops;
// Start runs the value-log collector.
func Open(opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if !opts.InMemory && opts.Dir == "" {
		return nil, errors.New("open store: Dir is required unless InMemory")
	}
	if !opts.InMemory {
		if err := checkInterruptedRekey(opts.Dir); err != nil {
			return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
		}
	}
	bo, err := badgerOptions(opts, log)
	if err != nil {
		return nil, err
	}
	db, err := badger.Open(bo)
	if err != nil {
		if opts.InMemory {
			return nil, fmt.Errorf("open in-memory store: %w", err)
		}
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, classifyOpenError(opts.Dir, opts.EncryptionKey, err))
	}
	s := &Store{db: db, log: log}
	s.raw = &RaftStore{s: s}
	s.group = newCommitter(s, bo.ValueThreshold)
	go s.group.run()
	s.gcInterval = opts.GCInterval
	if s.gcInterval == 0 {
		s.gcInterval = DefaultGCInterval
	}
	if opts.InMemory || s.gcInterval < 0 {
		s.gcInterval = 0
	}
	s.compactInterval = max(opts.CompactInterval, 0)
	return s, nil
}

// badgerOptions are the Badger options of the store opts describes.
func badgerOptions(opts Options, log *slog.Logger) (badger.Options, error) {
	mt := opts.MemTableSize
	switch {
	case mt == 0:
		mt = defaultMemTableSize
	case mt < minMemTableSize:
		mt = minMemTableSize
	}
	dir := opts.Dir
	if opts.InMemory {
		dir = ""
	}
	vt, vlf := int64(valueThreshold), int64(valueLogFileSize)
	if opts.InMemory {
		// Without a value log Badger refuses a value above the
		// threshold (v4.9.6 panics formatting that error for one under
		// 1 KiB): in memory the threshold stays a sixteenth of a
		// memtable, above an envelope's 64 KiB.
		vt = mt / 16
	}
	if opts.valueThreshold > 0 {
		vt = opts.valueThreshold
	}
	if opts.valueLogFileSize > 0 {
		vlf = opts.valueLogFileSize
	}
	bo := badger.DefaultOptions(dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(badgerLogger{log.With("part", "badger")}).
		WithMemTableSize(mt).
		WithNumMemtables(numMemtables).
		WithValueThreshold(vt).
		// Tables are not compressed, and small. A compaction builds
		// each new table whole in memory, and Badger sizes tables by
		// their compressed bytes: the raft log's bulk commands compress
		// some tenfold, so that tables of 2 MiB held some 20 MiB each
		// while built, a dozen at once, and a node holding a million
		// policies swung by up to 370 MB with its compactions. Tables
		// of 512 KiB uncompressed keep that under some 60 MB, for a
		// larger tree on disk (its pages that compactions read are
		// resident: some 45 MB at a million policies). Blocks are then
		// read in place, without a block cache (tables written
		// compressed before are still read, decompressed each time).
		WithCompression(options.None).
		WithBaseTableSize(baseTableSize).
		WithBlockCacheSize(0).
		WithIndexCacheSize(indexCacheSize).
		WithValueLogFileSize(vlf).
		WithNumCompactors(compactors(opts)).
		WithNumLevelZeroTables(l0Tables).
		WithNumLevelZeroTablesStall(l0StallTables).
		WithMetricsEnabled(false)
	if len(opts.EncryptionKey) > 0 {
		if len(opts.EncryptionKey) != KeySize {
			return badger.Options{}, fmt.Errorf("open store: encryption key is %d bytes, want %d (AES-256)", len(opts.EncryptionKey), KeySize)
		}
		rot := opts.EncryptionKeyRotation
		if rot <= 0 {
			rot = DefaultKeyRotation
		}
		// Badger requires an index cache with encryption (decrypted
		// indices are cached, not all kept in memory); the profile has
		// one anyway, set again here so that it cannot be lost.
		// Encrypted blocks are decrypted into the block cache, which
		// Badger then requires.
		bo = bo.WithEncryptionKey(bytes.Clone(opts.EncryptionKey)).
			WithEncryptionKeyRotationDuration(rot).
			WithIndexCacheSize(indexCacheSize).
			WithBlockCacheSize(blockCacheSize)
	}
	return bo, nil
}

// Start runs the value-log collector (Options.GCInterval) and the
// store's own compaction (Options.CompactInterval) until ctx ends or
// Close. The collector does not run in memory or when disabled; Start
// does nothing after Close, or when already started.
func (s *Store) Start(ctx context.Context) {
	if s.gcInterval == 0 && s.compactInterval == 0 {
		return
	}
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bg != nil || s.isClosed() {
		return
	}
	s.bg = routine.New(ctx)
	if s.gcInterval > 0 {
		s.bg.Go(func(ctx context.Context) { s.gcLoop(ctx, s.gcInterval) })
	}
	if s.compactInterval > 0 {
		s.bg.Go(func(ctx context.Context) { s.compactLoop(ctx, s.compactInterval) })
	}
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// SyncWrites reports whether every commit is synced to disk before it
// returns, as Badger was opened. Callers that acknowledge writes assert it.
func (s *Store) SyncWrites() bool { return s.db.Opts().SyncWrites }

// Close stops the value-log collector, waits for operations in flight,
// stops the envelope committer and closes the database. It is idempotent; later calls return the first
// call's result. Methods called after Close return ErrClosed. Shut raft
// down before closing the store that holds its log.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.bgMu.Lock()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		bg := s.bg
		s.bgMu.Unlock()
		if bg != nil {
			bg.Close()
		}
		s.ops.Wait()
		s.group.close()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// acquire registers an operation in flight, or returns ErrClosed. Every
// successful acquire must be paired with release. Nested operations (a
// callback of ScanEnvelopes calling the store) are safe: once Close has
// begun they fail with ErrClosed instead of blocking.
func (s *Store) acquire() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) release() { s.ops.Done() }

// update runs fn in a read-write transaction, retrying when it loses a race
// with a concurrent transaction. fn must be safe to run more than once.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	var err error
	for range maxConflictRetries {
		err = s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

func (s *Store) gcLoop(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		n := 0
		for ctx.Err() == nil {
			err := s.db.RunValueLogGC(gcDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value log GC", "err", err)
				}
				break
			}
			n++
		}
		if n > 0 {
			s.log.Debug("value log GC rewrote files", "files", n)
		}
	})
}

// badgerLogger adapts slog to Badger's logger. Badger's info messages are
// routine (tables opened, compactions), so they go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.logf(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.logf(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.logf(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.logf(slog.LevelDebug, f, a) }

func (b badgerLogger) logf(level slog.Level, f string, a []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimRight(fmt.Sprintf(f, a...), "\n"))
}
