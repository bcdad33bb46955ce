package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// oldValueThreshold is the threshold stores were written with before
// envelopes went to the value log: a sixteenth of the 4 MiB memtable,
// which kept every envelope in the LSM tree.
const oldValueThreshold = defaultMemTableSize / 16

// storeFiles returns the bytes of the files of dir whose names end in
// suffix (".vlog", ".sst"), concatenated, and their total size.
func storeFiles(t *testing.T, dir, suffix string) []byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// putMany stores n sightings of origins keys (sequence numbers from
// first), received at received, in calls of up to 256, and returns them.
func putMany(t *testing.T, s *Store, keys []intelKey, n int, received time.Time) []*intel.Envelope {
	t.Helper()
	ind := mustIndicator(t, "198.51.100.44")
	envs := make([]*intel.Envelope, 0, n)
	for i := range n {
		k := &keys[i%len(keys)]
		k.seq++
		envs = append(envs, sighting(t, k.k, k.seq, ind, t0))
	}
	for start := 0; start < n; start += 256 {
		batch := envs[start:min(start+256, n)]
		added, err := s.PutEnvelopes(batch, received)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range added {
			if !a {
				t.Fatalf("envelope %s/%d not added", batch[i].OriginID(), batch[i].Seq)
			}
		}
	}
	return envs
}

// Envelopes are written to the value log, the LSM tree keeping only
// their keys: an envelope's bytes are in a .vlog file and in no table. A
// store whose
// envelopes were written into the tree (the layout before) reads every
// one of them back and writes new ones to the value log.
func TestEnvelopesInValueLog(t *testing.T) {
	for _, layout := range []string{"today", "older"} {
		t.Run(layout, func(t *testing.T) {
			dir := t.TempDir()
			opts := DefaultOptions(dir)
			opts.GCInterval = -1
			if layout == "older" {
				opts.valueThreshold = oldValueThreshold
			}
			keys := []intelKey{{k: newKey(t)}, {k: newKey(t)}, {k: newKey(t)}}
			s := openStore(t, opts)
			envs := putMany(t, s, keys, 600, t0)
			if err := s.Close(); err != nil { // the memtable goes to a table
				t.Fatal(err)
			}
			vlog, sst := storeFiles(t, dir, ".vlog"), storeFiles(t, dir, ".sst")
			if len(sst) == 0 {
				t.Fatal("no table written: the test looks at nothing")
			}
			for _, env := range envs {
				inLog, inTable := bytes.Contains(vlog, env.Raw), bytes.Contains(sst, env.Raw)
				if layout == "today" && (!inLog || inTable) {
					t.Fatalf("envelope %s/%d: in the value log %v, in a table %v; want only the value log", env.OriginID(), env.Seq, inLog, inTable)
				}
				if layout == "older" && (inLog || !inTable) {
					t.Fatalf("older layout: envelope %s/%d in the value log %v, in a table %v; want only a table", env.OriginID(), env.Seq, inLog, inTable)
				}
			}
			s = openStore(t, DefaultOptions(dir))
			if recs, err := s.Sightings(0); err != nil || len(recs) != len(envs) {
				t.Fatalf("Sightings: %d records, %v; want %d", len(recs), err, len(envs))
			}

			// Reopened with today's options, every envelope reads back,
			// by key and by scan; the marks are the last sequence numbers.
			for _, env := range envs {
				raw, err := s.GetEnvelope(env.OriginID(), env.Seq)
				if err != nil || !bytes.Equal(raw, env.Raw) {
					t.Fatalf("GetEnvelope %s/%d: %v", env.OriginID(), env.Seq, err)
				}
			}
			hw, err := s.HighWater()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				o := nodeID(k.k)
				if hw[o] != k.seq {
					t.Fatalf("high-water mark of %s is %d, want %d", o, hw[o], k.seq)
				}
				n := 0
				if err := s.ScanEnvelopes(o, 0, func([]byte) error { n++; return nil }); err != nil || n != int(k.seq) {
					t.Fatalf("ScanEnvelopes %s: %d, %v; want %d", o, n, err, k.seq)
				}
			}
			// A duplicate is still refused, a new envelope is added, and
			// it goes to the value log.
			if added, err := s.PutEnvelope(envs[0], t0); err != nil || added {
				t.Fatalf("duplicate after reopen: added %v, %v", added, err)
			}
			more := putMany(t, s, keys, 30, t0.Add(time.Minute))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			vlog = storeFiles(t, dir, ".vlog")
			for _, env := range more {
				if !bytes.Contains(vlog, env.Raw) {
					t.Fatalf("envelope %s/%d written after reopening is not in the value log", env.OriginID(), env.Seq)
				}
			}
		})
	}
}

// Pruned envelopes leave their bytes in the value log until the collector
// rewrites the files they fill: after Prune, compaction and collection,
// the value log files that held only pruned envelopes are gone, and what
// was kept reads back.
func TestPrunedEnvelopesValueLogReclaimed(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions(dir)
	opts.GCInterval = -1
	opts.valueLogFileSize = 1 << 20
	s := openStore(t, opts)
	keys := make([]intelKey, 8)
	for i := range keys {
		keys[i] = intelKey{k: newKey(t)}
	}
	old := putMany(t, s, keys, 8000, t0) // some 3 MB: several files
	kept := putMany(t, s, keys, 600, t0.Add(time.Hour))
	logBytes := func() int { return len(storeFiles(t, dir, ".vlog")) }
	before := logBytes()
	if before < 3<<20 {
		t.Fatalf("%d bytes of value log for %d envelopes: the test fills too few files", before, len(old))
	}
	if n, err := s.Prune(t0.Add(time.Minute)); err != nil || n != len(old) {
		t.Fatalf("Prune = %d, %v; want %d", n, err, len(old))
	}
	// Compaction drops the deleted envelopes and counts what they leave
	// in each value log file. A node compacts as it keeps writing; here
	// Badger compacts level 0 as it closes.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	bo, err := badgerOptions(opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(bo.WithCompactL0OnClose(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, opts)
	for _, ti := range s.db.Tables() {
		if ti.Level == 0 {
			t.Fatalf("a table is left at level 0 (%d keys): nothing was compacted", ti.KeyCount)
		}
	}
	rewritten := 0
	for {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if errors.Is(err, badger.ErrNoRewrite) {
			break
		}
		if err != nil {
			t.Fatalf("value log GC: %v", err)
		}
		rewritten++
	}
	after := logBytes()
	t.Logf("value log: %d bytes before pruning %d envelopes, %d after %d collections", before, len(old), after, rewritten)
	if rewritten == 0 || after > before/2 {
		t.Fatalf("value log is %d bytes after pruning %d of %d envelopes and %d collections (was %d): not reclaimed",
			after, len(old), len(old)+len(kept), rewritten, before)
	}
	for _, env := range kept {
		if raw, err := s.GetEnvelope(env.OriginID(), env.Seq); err != nil || !bytes.Equal(raw, env.Raw) {
			t.Fatalf("kept envelope %s/%d after collection: %v", env.OriginID(), env.Seq, err)
		}
	}
	if _, err := s.GetEnvelope(old[0].OriginID(), old[0].Seq); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pruned envelope %s/%d: %v, want %v", old[0].OriginID(), old[0].Seq, err, ErrNotFound)
	}
	if n, err := s.CountEnvelopes(); err != nil || n != len(kept) {
		t.Fatalf("CountEnvelopes = %d, %v; want %d", n, err, len(kept))
	}
}

// The committer sizes a group as Badger sizes a transaction: envelopes
// whose estimates add up to less than Badger's limit fit one transaction,
// and the one that does not fit is the one whose estimate takes the sum
// over it. Values in the value log count as pointers, so a group carries
// as many envelopes as a transaction holds.
func TestEnvelopeEstimateIsBadgers(t *testing.T) {
	for _, layout := range []string{"today", "older"} {
		t.Run(layout, func(t *testing.T) {
			opts := DefaultOptions(t.TempDir())
			if layout == "older" {
				opts.valueThreshold = oldValueThreshold
			}
			s := openStore(t, opts)
			k := newKey(t)
			ind := mustIndicator(t, "198.51.100.45")
			txn := s.db.NewTransaction(true)
			defer txn.Discard()
			var sum, last int64
			fitted, entries := 0, 0
			for seq := uint64(1); ; seq++ {
				w, err := newEnvelopeWrite(sighting(t, k, seq, ind, t0), t0)
				if err != nil {
					t.Fatal(err)
				}
				w.size = w.estimate(s.group.threshold)
				if _, err := putEnvelope(txn, &w); errors.Is(err, badger.ErrTxnTooBig) {
					last = w.size
					break
				} else if err != nil {
					t.Fatal(err)
				}
				sum += w.size
				fitted++
				entries += 3 + len(w.sightKeys)
			}
			limit := s.db.MaxBatchSize()
			if int64(entries+4) >= s.db.MaxBatchCount() {
				t.Fatalf("%d entries reach the count limit %d first: the test sizes nothing", entries, s.db.MaxBatchCount())
			}
			t.Logf("%d envelopes fit, estimated %d bytes each on average, the next %d; limit %d", fitted, sum/int64(fitted), last, limit)
			if sum >= limit || sum+last < limit {
				t.Fatalf("%d envelopes estimated at %d bytes fit a transaction of %d bytes, and the next (%d) did not", fitted, sum, limit, last)
			}
		})
	}
}

// The value log is written in files of at most 16 MiB, whatever one
// writes: Badger syncs the newest file's mapping on every commit, and a
// commit costs more as that file fills (a single raft entry took twice as
// long with 40 MB of bulk commands in the file as with none; 15 MB cost
// nothing measurable). Raft entries of 128 bytes and more live in the
// value log, so 40 MB of them, a million policies' bulk commands, fill
// several files, each closed at the size.
func TestValueLogFilesBounded(t *testing.T) {
	const maxFile = 16 << 20
	dir := t.TempDir()
	opts := DefaultOptions(dir)
	opts.GCInterval = -1
	s := openStore(t, opts)
	// Random bytes: the store keeps them as they are (raft entries that
	// compress are stored compressed, raftcodec.go).
	data := make([]byte, 80<<10)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	const batch, batches = 4, 125 // 40 MB in commits of four entries
	for b := range batches {
		logs := make([]*raft.Log, batch)
		for i := range logs {
			logs[i] = &raft.Log{Index: uint64(b*batch + i + 1), Term: 1, Type: raft.LogCommand, Data: data}
		}
		if err := s.RaftStore().StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64 // in file order, the newest last
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".vlog") {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, fi.Size())
		}
	}
	written := int64(batch * batches * len(data))
	if atLeast := written / maxFile; int64(len(sizes)) <= atLeast {
		t.Fatalf("%d bytes of raft entries in %d value log files (sizes %v): want more than %d files of at most %d bytes",
			written, len(sizes), sizes, atLeast, maxFile)
	}
	// Every file but the newest (open for writing, and mapped twice its
	// size) was closed at the size, give or take the commit that crossed
	// it.
	for _, sz := range sizes[:len(sizes)-1] {
		if over := int64(batch * len(data) * 2); sz > maxFile+over {
			t.Fatalf("a closed value log file holds %d bytes, more than %d (+%d): files %v", sz, maxFile, over, sizes)
		}
	}
	var got raft.Log
	if err := s.RaftStore().GetLog(1, &got); err != nil || !bytes.Equal(got.Data, data) {
		t.Fatalf("first entry back: %v", err)
	}
}
