//go:build linux

package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// TestPowerLossKeepsRaftBatches stores raft log entries as a leader and a
// follower do, in batches of many entries in one call (consensus batches
// up to its MaxAppendEntries), among them a batch too large for one
// Badger transaction, cuts the power, and finds every entry of every
// batch StoreLogs acknowledged, each intact. It fails when the store is
// opened without synced writes.
func TestPowerLossKeepsRaftBatches(t *testing.T) {
	disk := newLoopDisk(t)
	img, mnt := disk.format()

	opts := DefaultOptions(filepath.Join(mnt, "store"))
	opts.MemTableSize = minMemTableSize
	opts.GCInterval = -1
	r := openStore(t, opts).RaftStore()

	var stored []*raft.Log
	next := uint64(1)
	batch := func(n, size int) {
		t.Helper()
		logs := make([]*raft.Log, n)
		for i := range logs {
			data := bytes.Repeat([]byte{byte(next)}, size)
			copy(data, fmt.Sprintf("entry %d ", next))
			logs[i] = &raft.Log{Index: next, Term: 2, Type: raft.LogCommand, Data: data, AppendedAt: t0}
			next++
		}
		if err := r.StoreLogs(logs); err != nil {
			t.Fatalf("StoreLogs %d-%d: %v", logs[0].Index, logs[n-1].Index, err)
		}
		stored = append(stored, logs...)
	}
	for range 16 {
		batch(256, 1500) // automatic blocks, a full batch
	}
	batch(7, 1500)
	// Bulk commands: more than one transaction of a 4 MiB memtable holds.
	batch(12, 120<<10)
	batch(64, 1500)

	after := DefaultOptions(filepath.Join(disk.powerLoss(img), "store"))
	after.MemTableSize = minMemTableSize
	after.GCInterval = -1
	got := openStore(t, after).RaftStore()
	if last, err := got.LastIndex(); err != nil || last != next-1 {
		t.Fatalf("LastIndex after the power loss = %d, %v; want %d", last, err, next-1)
	}
	for _, want := range stored {
		var l raft.Log
		if err := got.GetLog(want.Index, &l); err != nil {
			t.Fatalf("raft log %d lost in the power loss: %v", want.Index, err)
		}
		assertLogEqual(t, &l, want)
	}
}
