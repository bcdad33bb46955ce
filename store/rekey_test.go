package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// rekeyFixture is a stopped node's data: a store and two snapshots, under
// key (nil: not encrypted).
func rekeyFixture(t *testing.T, key []byte) (storeDir, snapDir string, snapState []byte) {
	t.Helper()
	dir := t.TempDir()
	storeDir, snapDir = filepath.Join(dir, "store"), filepath.Join(dir, "raft")
	s, err := Open(encOptions(storeDir, key))
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	snaps := encFileSnaps(t, snapDir, key)
	snapState = []byte(strings.Join(markCommands(100), "\n"))
	_, trans := raft.NewInmemTransport("n1")
	defer trans.Close()
	for _, index := range []uint64{10, 20} {
		sink, err := snaps.Create(1, index, 1, raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "n1"}}}, 1, trans)
		if err == nil {
			_, err = sink.Write(snapState)
		}
		if err == nil {
			err = sink.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return storeDir, snapDir, snapState
}

// checkUnder checks that the store and the snapshots open with key and
// hold their data, and that other refuses them.
func checkUnder(t *testing.T, storeDir, snapDir string, state, key, other []byte) {
	t.Helper()
	s, err := Open(encOptions(storeDir, key))
	if err != nil {
		t.Fatalf("open with the new key: %v", err)
	}
	checkFilled(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(encOptions(storeDir, other)); err == nil {
		s.Close()
		t.Fatal("the store still opens with the old key")
	}
	snaps := encFileSnaps(t, snapDir, key)
	metas, err := snaps.List()
	if err != nil || len(metas) != 2 || metas[0].Index != 20 || metas[1].Index != 10 {
		t.Fatalf("snapshots after rekey: %+v, %v", metas, err)
	}
	for _, m := range metas {
		_, rc, err := snaps.Open(m.ID)
		if err != nil {
			t.Fatalf("open snapshot %s with the new key: %v", m.ID, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, state) {
			t.Fatalf("snapshot %s: %d bytes, %v", m.ID, len(got), err)
		}
		if len(key) > 0 {
			if _, _, err := encFileSnaps(t, snapDir, NewKey()).Open(m.ID); !errors.Is(err, ErrSnapshotWrongKey) {
				t.Fatalf("snapshot %s under another key: %v", m.ID, err)
			}
		}
		if len(other) > 0 {
			if _, _, err := encFileSnaps(t, snapDir, other).Open(m.ID); err == nil {
				t.Fatalf("snapshot %s still opens with the old key", m.ID)
			}
		}
	}
	if _, err := os.Stat(storeDir + rekeyOldSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old store was left behind: %v", err)
	}
	if len(key) > 0 {
		grepDir(t, filepath.Dir(storeDir), plainMarker)
	}
}

// TestRekey rotates, rewrites, encrypts and decrypts a stopped node's
// store and snapshots end to end; a second run finds nothing to do.
func TestRekey(t *testing.T) {
	k1, k2 := NewKey(), NewKey()
	for _, tc := range []struct {
		name     string
		old, new []byte
		rewrite  bool
		want     string
	}{
		{"rotate", k1, k2, false, RekeyRotated},
		{"rotate and rewrite", k1, k2, true, RekeyRewritten},
		{"encrypt", nil, k2, false, RekeyRewritten},
		{"decrypt", k1, nil, false, RekeyRewritten},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storeDir, snapDir, state := rekeyFixture(t, tc.old)
			o := RekeyOptions{Dir: storeDir, SnapshotDir: snapDir, OldKey: tc.old, NewKey: tc.new, Rewrite: tc.rewrite, Logger: testLogger(t)}
			rep, err := Rekey(o)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Store != tc.want || rep.Snapshots != 2 || rep.SnapshotsDone != 0 {
				t.Fatalf("report %+v, want %q and 2 snapshots", rep, tc.want)
			}
			checkUnder(t, storeDir, snapDir, state, tc.new, tc.old)
			if tc.new == nil {
				if s, err := Open(encOptions(storeDir, k1)); !errors.Is(err, ErrNotEncrypted) {
					if s != nil {
						s.Close()
					}
					t.Fatalf("a key for the decrypted store: %v", err)
				}
			}
			rep, err = Rekey(o)
			if err != nil || rep.Store != RekeyAlreadyDone || rep.Snapshots != 0 || rep.SnapshotsDone != 2 {
				t.Fatalf("second run: %+v, %v", rep, err)
			}
		})
	}
}

// TestRekeyRefuses: a running node (the store open), a wrong old key, a
// missing old key, and nonsense arguments leave the store untouched.
func TestRekeyRefuses(t *testing.T) {
	k1 := NewKey()
	storeDir, snapDir, state := rekeyFixture(t, k1)
	o := RekeyOptions{Dir: storeDir, SnapshotDir: snapDir, OldKey: k1, NewKey: NewKey()}

	s, err := Open(encOptions(storeDir, k1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rekey(o); !errors.Is(err, ErrStoreInUse) {
		t.Errorf("store open: %v, want ErrStoreInUse", err)
	}
	rw := o
	rw.Rewrite = true
	if _, err := Rekey(rw); !errors.Is(err, ErrStoreInUse) {
		t.Errorf("store open, rewrite: %v, want ErrStoreInUse", err)
	}
	s.Close()

	for _, tc := range []struct {
		name     string
		old, new []byte
		want     error
		text     string
	}{
		{"wrong old key", NewKey(), NewKey(), ErrWrongKey, "old key"},
		{"no old key", nil, NewKey(), ErrKeyRequired, ""},
		{"same key", k1, k1, nil, "the new key is the old key"},
		{"no keys", nil, nil, nil, "nothing to do"},
		{"short key", k1, k1[:16], nil, "want 32"},
	} {
		_, err := Rekey(RekeyOptions{Dir: storeDir, SnapshotDir: snapDir, OldKey: tc.old, NewKey: tc.new})
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := Rekey(RekeyOptions{Dir: filepath.Join(t.TempDir(), "none"), NewKey: k1}); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Errorf("no store: %v", err)
	}
	checkUnder(t, storeDir, snapDir, state, k1, NewKey())
}

// TestRekeyResumesInterruptedRewrite: a rewrite stopped between its two
// renames leaves no store at the directory; Open refuses to create one
// there, and Rekey run again completes the swap.
func TestRekeyResumesInterruptedRewrite(t *testing.T) {
	k := NewKey()
	storeDir, snapDir, state := rekeyFixture(t, nil)
	// What rewrite had made before it stopped: the encrypted copy.
	src, err := badgerOptions(Options{Dir: storeDir, SyncWrites: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := badgerOptions(Options{Dir: storeDir + rekeyNewSuffix, SyncWrites: true, EncryptionKey: k}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	db, err := badgerOpen(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.StreamDB(out); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Rename(storeDir, storeDir+rekeyOldSuffix); err != nil {
		t.Fatal(err)
	}

	if s, err := Open(encOptions(storeDir, k)); err == nil || !strings.Contains(err.Error(), "interrupted") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open during an interrupted rekey: %v", err)
	}
	rep, err := Rekey(RekeyOptions{Dir: storeDir, SnapshotDir: snapDir, NewKey: k})
	if err != nil || rep.Store != RekeyAlreadyDone || rep.Snapshots != 2 {
		t.Fatalf("resume: %+v, %v", rep, err)
	}
	checkUnder(t, storeDir, snapDir, state, k, nil)
}

func badgerOpen(o badger.Options) (*badger.DB, error) { return badger.OpenManaged(o) }
