package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// TestReopenKeepsState writes every kind of record, closes the store, and
// reads it all back from the same directory.
func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t)
	ind := mustIndicator(t, "203.0.113.99")
	env := sighting(t, k, 1, ind, t0)
	dec := intel.NewPolicy(intel.ActionBlock, ind, "local", "local:x", t0, time.Hour)

	s, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, env, t0)
	put(t, s, heartbeat(t, k, 2), t0)
	for want := uint64(1); want <= 3; want++ {
		if n, err := s.NextSeq(); err != nil || n != want {
			t.Fatalf("NextSeq = %d, %v; want %d", n, err, want)
		}
	}
	if err := s.PutDecision(dec); err != nil {
		t.Fatal(err)
	}
	if err := s.RaftStore().StoreLogs([]*raft.Log{{Index: 1, Term: 2, Data: []byte("x"), AppendedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RaftStore().SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, DefaultOptions(dir))
	raw, err := s.GetEnvelope(nodeID(k), 1)
	if err != nil || !bytes.Equal(raw, env.Raw) {
		t.Fatalf("envelope after reopen: %v", err)
	}
	if n, _ := s.CountEnvelopes(); n != 2 {
		t.Fatalf("CountEnvelopes after reopen = %d", n)
	}
	if hw, _ := s.HighWater(); hw[nodeID(k)] != 2 {
		t.Fatalf("HighWater after reopen = %v", hw)
	}
	if recs, _ := s.SightingsFor(ind, t0); len(recs) != 1 || recs[0].Origin != nodeID(k) {
		t.Fatalf("SightingsFor after reopen = %+v", recs)
	}
	if n, err := s.NextSeq(); err != nil || n != 4 {
		t.Fatalf("NextSeq after reopen = %d, %v; want 4", n, err)
	}
	ds, err := s.Decisions(t0)
	if err != nil || len(ds) != 1 || ds[0].ID != dec.ID || !ds[0].ExpiresAt.Equal(dec.ExpiresAt) {
		t.Fatalf("Decisions after reopen = %+v, %v", ds, err)
	}
	var l raft.Log
	if err := s.RaftStore().GetLog(1, &l); err != nil || l.Term != 2 || !l.AppendedAt.Equal(t0) {
		t.Fatalf("raft log after reopen = %+v, %v", l, err)
	}
	if v, _ := s.RaftStore().GetUint64([]byte("CurrentTerm")); v != 2 {
		t.Fatalf("CurrentTerm after reopen = %d", v)
	}
}

// TestOpenLocked checks that a second handle on the same directory is
// refused rather than corrupting it.
func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	openStore(t, DefaultOptions(dir))
	if s, err := Open(DefaultOptions(dir)); err == nil {
		s.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Dir or InMemory succeeded")
	}
	// A directory that does not exist yet is created.
	nested := openStore(t, DefaultOptions(filepath.Join(t.TempDir(), "a", "b")))
	if _, err := nested.NextSeq(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWaitsForOperations closes the store while writers run: every
// call either succeeds or fails with ErrClosed, and nothing panics.
func TestCloseWaitsForOperations(t *testing.T) {
	for _, o := range openers() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			k := newKey(t)
			envs := make([]*intel.Envelope, 200)
			for i := range envs {
				envs[i] = heartbeat(t, k, uint64(i+1))
			}
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(envs); i += 4 {
						if _, err := s.PutEnvelope(envs[i], t0); err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Error(err)
							}
							return
						}
						if _, err := s.NextSeq(); err != nil && !errors.Is(err, ErrClosed) {
							t.Error(err)
							return
						}
					}
				}()
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
		})
	}
}

// TestStoreLogsTooBigForOneTxn stores a batch larger than one Badger
// transaction can hold.
func TestStoreLogsTooBigForOneTxn(t *testing.T) {
	for _, o := range []opener{
		{"memory", func(t testing.TB) *Store { return openStore(t, Options{InMemory: true, MemTableSize: minMemTableSize}) }},
		{"disk", func(t testing.TB) *Store {
			opts := DefaultOptions(t.(*testing.T).TempDir())
			opts.MemTableSize = minMemTableSize
			return openStore(t, opts)
		}},
	} {
		t.Run(o.name, func(t *testing.T) {
			r := o.open(t).RaftStore()
			// 4 MiB memtable: one transaction holds about 600 KiB.
			var logs []*raft.Log
			for i := range 64 {
				logs = append(logs, &raft.Log{Index: uint64(i + 1), Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 64<<10)})
			}
			if err := r.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			for _, want := range logs {
				var got raft.Log
				if err := r.GetLog(want.Index, &got); err != nil {
					t.Fatal(err)
				}
				assertLogEqual(t, &got, want)
			}
			if i, _ := r.LastIndex(); i != 64 {
				t.Fatalf("LastIndex = %d", i)
			}
		})
	}
}

func TestLogEncodingRoundTrip(t *testing.T) {
	cases := []raft.Log{
		{},
		{Index: ^uint64(0), Term: ^uint64(0), Type: raft.LogConfiguration},
		{Index: 1, Data: []byte{}, Extensions: []byte{}},
		{Index: 2, Data: []byte("d"), Extensions: []byte("e"), AppendedAt: time.Unix(1, 2).In(time.FixedZone("Y", -7200))},
		{Index: 3, AppendedAt: time.Unix(-5, 0).UTC()},
	}
	for i, want := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			b, err := encodeLog(&want)
			if err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := decodeLog(b, &got); err != nil {
				t.Fatal(err)
			}
			assertLogEqual(t, &got, &want)
			for n := range len(b) {
				if err := decodeLog(b[:n], &got); err == nil {
					t.Fatalf("truncated to %d of %d bytes decoded", n, len(b))
				}
			}
			if err := decodeLog(append(b, 0), &got); err == nil {
				t.Fatal("trailing byte accepted")
			}
		})
	}
}

func FuzzDecodeLog(f *testing.F) {
	b, _ := encodeLog(&raft.Log{Index: 5, Term: 2, Data: []byte("x"), Extensions: []byte("y"), AppendedAt: t0})
	f.Add(b)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeLog(b, &l); err != nil {
			return
		}
		again, err := encodeLog(&l)
		if err != nil {
			t.Fatal(err)
		}
		var l2 raft.Log
		if err := decodeLog(again, &l2); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		assertLogEqual(t, &l2, &l)
	})
}
