package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/raft"
)

// A store whose tables were written compressed (the options before
// tables were left uncompressed) opens with today's options, without a
// block cache, and reads back every entry; what it writes now is not
// compressed.
func TestOpensTablesWrittenCompressed(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions(dir)
	bo, err := badgerOptions(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if bo.Compression != options.None || bo.BlockCacheSize != 0 {
		t.Fatalf("today's options: compression %v, block cache %d; want none, 0", bo.Compression, bo.BlockCacheSize)
	}
	const n = 300
	data := func(i uint64) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf(`{"ip":"10.0.%d.%d"}`, i/256, i%256)), 400)
	}
	// The options before also kept these values in the tree.
	old, err := badger.Open(bo.WithCompression(options.Snappy).WithBlockCacheSize(1 << 20).WithValueThreshold(oldValueThreshold))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= n; i++ {
		v, err := encodeLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Update(func(txn *badger.Txn) error { return txn.Set(raftLogKey(i), v) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil { // flushes the memtable to a table
		t.Fatal(err)
	}

	s := openStore(t, opts)
	compressed := 0
	for _, ti := range s.db.Tables() {
		if ti.OnDiskSize < ti.UncompressedSize/2 {
			compressed++
		}
	}
	if compressed == 0 {
		t.Fatal("no table written compressed: the test reads nothing old")
	}
	for i := uint64(1); i <= n; i++ {
		var l raft.Log
		if err := s.raw.GetLog(i, &l); err != nil {
			t.Fatalf("log %d: %v", i, err)
		}
		if !bytes.Equal(l.Data, data(i)) {
			t.Fatalf("log %d reads back %d bytes, not what was written", i, len(l.Data))
		}
	}
}
