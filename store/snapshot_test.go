package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// sealStream encrypts plain as a snapshot stream.
func sealStream(t *testing.T, key, plain []byte, writes int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newSnapWriter(&buf, key, snapKeyID(key))
	if err != nil {
		t.Fatal(err)
	}
	// Write in uneven pieces, as an FSM does.
	step := max(1, len(plain)/max(1, writes))
	for p := plain; len(p) > 0; {
		n := min(step, len(p))
		if k, err := w.Write(p[:n]); err != nil || k != n {
			t.Fatalf("write: %d, %v", k, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openStream(key, sealed []byte) ([]byte, error) {
	r, err := newSnapReader(bytes.NewReader(sealed), key, snapKeyID(key))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestSnapshotStreamRoundTrip covers every way a stream ends: empty, in a
// chunk, on a chunk boundary; the plaintext size is known from the
// ciphertext size alone.
func TestSnapshotStreamRoundTrip(t *testing.T) {
	key := NewKey()
	for _, n := range []int{0, 1, snapChunk - 1, snapChunk, snapChunk + 1, 3 * snapChunk, 3*snapChunk + 5} {
		plain := patterned(n)
		for _, writes := range []int{1, 7, 1000} {
			sealed := sealStream(t, key, plain, writes)
			got, err := openStream(key, sealed)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%d bytes in %d writes: %d bytes back, %v", n, writes, len(got), err)
			}
			if size, ok := snapPlainSize(int64(len(sealed))); !ok || size != int64(n) {
				t.Fatalf("%d bytes: plaintext size from %d sealed = %d, %v", n, len(sealed), size, ok)
			}
		}
	}
	// Two snapshots of the same state differ (per-snapshot salt and nonce).
	a, b := sealStream(t, key, patterned(100), 1), sealStream(t, key, patterned(100), 1)
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of one state are identical")
	}
}

// TestSnapshotStreamRefusesTampering flips, cuts, extends and reorders a
// sealed stream: every change is refused, by name.
func TestSnapshotStreamRefusesTampering(t *testing.T) {
	key := NewKey()
	plain := patterned(3*snapChunk + 100)
	sealed := sealStream(t, key, plain, 3)
	chunk := snapChunk + snapTag
	check := func(name string, b []byte, want error) {
		t.Helper()
		got, err := openStream(key, b)
		if !errors.Is(err, want) {
			t.Errorf("%s: %d bytes, %v; want %v", name, len(got), err, want)
		}
	}
	// A flipped byte anywhere: header, first, middle and last chunk, tag.
	for _, at := range []int{0, len(snapMagic), len(snapMagic) + snapKeyIDLen, snapHeaderLen - 1, snapHeaderLen, snapHeaderLen + chunk + 17, len(sealed) - 1} {
		b := bytes.Clone(sealed)
		b[at] ^= 0x01
		want := ErrSnapshotCorrupt
		switch {
		case at < len(snapMagic):
			want = ErrSnapshotNotEncrypted
		case at < len(snapMagic)+snapKeyIDLen:
			want = ErrSnapshotWrongKey
		}
		check(fmt.Sprintf("byte %d flipped", at), b, want)
	}
	// Truncated on every chunk boundary and inside chunks.
	for _, n := range []int{snapHeaderLen, snapHeaderLen + 5, snapHeaderLen + chunk, snapHeaderLen + chunk + 1, snapHeaderLen + 2*chunk, snapHeaderLen + 3*chunk, len(sealed) - 1} {
		check(fmt.Sprintf("truncated to %d", n), sealed[:n], ErrSnapshotCorrupt)
	}
	check("extended", append(bytes.Clone(sealed), 0), ErrSnapshotCorrupt)
	swapped := bytes.Clone(sealed)
	copy(swapped[snapHeaderLen:], sealed[snapHeaderLen+chunk:snapHeaderLen+2*chunk])
	copy(swapped[snapHeaderLen+chunk:], sealed[snapHeaderLen:snapHeaderLen+chunk])
	check("chunks swapped", swapped, ErrSnapshotCorrupt)
	check("plaintext", plain, ErrSnapshotNotEncrypted)
	if _, err := openStream(NewKey(), sealed); !errors.Is(err, ErrSnapshotWrongKey) {
		t.Errorf("wrong key: %v", err)
	}
}

// markFSM holds commands and snapshots them all, so that a restored FSM
// shows what the snapshot carried.
type markFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *markFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(l.Data))
	return nil
}

func (f *markFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return markSnapshot(slices.Clone(f.cmds)), nil
}

func (f *markFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = nil
	if len(b) > 0 {
		f.cmds = strings.Split(string(b), "\n")
	}
	return nil
}

func (f *markFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

type markSnapshot []string

func (s markSnapshot) Persist(sink raft.SnapshotSink) error {
	for i, c := range s {
		if i > 0 {
			if _, err := sink.Write([]byte("\n")); err != nil {
				sink.Cancel()
				return err
			}
		}
		if _, err := sink.Write([]byte(c)); err != nil {
			sink.Cancel()
			return err
		}
	}
	return sink.Close()
}
func (markSnapshot) Release() {}

func encFileSnaps(t *testing.T, dir string, key []byte) raft.SnapshotStore {
	t.Helper()
	inner, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if key == nil {
		return inner
	}
	s, err := EncryptedSnapshotStore(inner, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// markCommands are commands big enough for a snapshot of several chunks,
// each carrying plainMarker.
func markCommands(n int) []string {
	cmds := make([]string, n)
	for i := range cmds {
		cmds[i] = fmt.Sprintf("%s-%04d-%s", plainMarker, i, strings.Repeat("x", 1000))
	}
	return cmds
}

// TestEncryptedFileSnapshots writes a snapshot through the wrapper into
// raft's file snapshot store: the file holds no plaintext, Open and List
// report the plaintext size, a tampered file and another key are refused,
// and an unencrypted snapshot is named as such.
func TestEncryptedFileSnapshots(t *testing.T) {
	dir := t.TempDir()
	key := NewKey()
	snaps := encFileSnaps(t, dir, key)
	cmds := markCommands(200)
	sink, err := snaps.Create(1, 10, 2, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := markSnapshot(cmds).Persist(sink); err != nil {
		t.Fatal(err)
	}
	want := []byte(strings.Join(cmds, "\n"))
	grepDir(t, dir, plainMarker)

	metas, err := snaps.List()
	if err != nil || len(metas) != 1 || metas[0].Size != int64(len(want)) {
		t.Fatalf("List: %+v, %v; want one of size %d", metas, err, len(want))
	}
	meta, rc, err := snaps.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) || meta.Size != int64(len(want)) || meta.Index != 10 || meta.Term != 2 {
		t.Fatalf("Open: %+v, %d bytes, %v", meta, len(got), err)
	}

	if _, _, err := encFileSnaps(t, dir, NewKey()).Open(sink.ID()); !errors.Is(err, ErrSnapshotWrongKey) {
		t.Fatalf("another key: %v", err)
	}
	// A tampered state file is refused (raft's CRC or our tag: either way
	// nothing is restored).
	state := filepath.Join(dir, "snapshots", sink.ID(), "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x80
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, rc, err := snaps.Open(sink.ID()); err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
		if err == nil {
			t.Fatal("a tampered snapshot was read")
		}
	}

	// A snapshot written without the wrapper is named as unencrypted.
	plainDir := t.TempDir()
	psink, err := encFileSnaps(t, plainDir, nil).Create(1, 10, 2, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := markSnapshot(cmds).Persist(psink); err != nil {
		t.Fatal(err)
	}
	if _, _, err := encFileSnaps(t, plainDir, key).Open(psink.ID()); !errors.Is(err, ErrSnapshotNotEncrypted) {
		t.Fatalf("plaintext snapshot: %v", err)
	}
	if _, err := EncryptedSnapshotStore(raft.NewInmemSnapshotStore(), key[:16]); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}

// TestRaftEncryptedSnapshots runs raft on encrypted snapshots: a leader
// snapshots and compacts its log, a new follower receives the snapshot
// (InstallSnapshot checks the plaintext size), and the leader restarted
// restores from its own snapshot. No snapshot file holds plaintext.
func TestRaftEncryptedSnapshots(t *testing.T) {
	key := NewKey()
	conf := raftConfig()
	conf.TrailingLogs = 0
	conf.SnapshotThreshold = 1 << 30 // snapshots only when asked
	dir1 := t.TempDir()
	s1 := openStore(t, encOptions(filepath.Join(dir1, "store"), key))
	snaps1 := encFileSnaps(t, filepath.Join(dir1, "raft"), key)
	addr1, trans1 := raft.NewInmemTransport("n1")
	if err := raft.BootstrapCluster(conf, s1.RaftStore(), s1.RaftStore(), snaps1, trans1,
		raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr1}}}); err != nil {
		t.Fatal(err)
	}
	fsm1 := &markFSM{}
	r1, err := raft.NewRaft(conf, fsm1, s1.RaftStore(), s1.RaftStore(), snaps1, trans1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r1.Shutdown().Error() }()
	waitLeader(t, r1)
	cmds := markCommands(150)
	for _, c := range cmds {
		if err := r1.Apply([]byte(c), 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r1.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}

	// A new follower can only be brought up by the snapshot.
	dir2 := t.TempDir()
	conf2 := raftConfig()
	conf2.LocalID = "node-2"
	s2 := openStore(t, encOptions(filepath.Join(dir2, "store"), key))
	snaps2 := encFileSnaps(t, filepath.Join(dir2, "raft"), key)
	addr2, trans2 := raft.NewInmemTransport("n2")
	trans1.Connect(addr2, trans2)
	trans2.Connect(addr1, trans1)
	fsm2 := &markFSM{}
	r2, err := raft.NewRaft(conf2, fsm2, s2.RaftStore(), s2.RaftStore(), snaps2, trans2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r2.Shutdown().Error() }()
	if err := r1.AddVoter("node-2", addr2, 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(fsm2.applied(), cmds) {
		if time.Now().After(deadline) {
			t.Fatalf("follower holds %d commands, want %d", len(fsm2.applied()), len(cmds))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r2.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}

	// The leader restarts from its own snapshot (its log is compacted).
	if err := r1.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	fsm3 := &markFSM{}
	_, trans3 := raft.NewInmemTransport("n1")
	r3, err := raft.NewRaft(conf, fsm3, s1.RaftStore(), s1.RaftStore(), snaps1, trans3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r3.Shutdown().Error() }()
	if got := fsm3.applied(); !slices.Equal(got, cmds) {
		t.Fatalf("restored %d commands, want %d", len(got), len(cmds))
	}
	grepDir(t, filepath.Join(dir1, "raft"), plainMarker)
	grepDir(t, filepath.Join(dir2, "raft"), plainMarker)
}

func waitLeader(t *testing.T, r *raft.Raft) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 10 s; state %s", r.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
