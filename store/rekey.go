package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// RekeyOptions describe an offline change of a store's encryption key.
type RekeyOptions struct {
	// Dir is the store's directory (data_dir/store).
	Dir string
	// SnapshotDir, when set, is the base directory of raft's file
	// snapshot store (data_dir/raft); its snapshots are re-encrypted too.
	SnapshotDir string
	// OldKey is the key the store is encrypted with; nil for a store that
	// is not encrypted.
	OldKey []byte
	// NewKey is the key to encrypt with; nil to decrypt.
	NewKey []byte
	// Rewrite rewrites every table and value log under fresh data keys
	// even when only the key changes (after a key is compromised): by
	// default a key change re-encrypts only Badger's key registry.
	Rewrite bool
	// Logger receives Badger's messages; nil discards them.
	Logger *slog.Logger
}

// RekeyReport says what Rekey did.
type RekeyReport struct {
	// Store is what happened to the store: RekeyRotated, RekeyRewritten
	// or RekeyAlreadyDone.
	Store string
	// Snapshots is how many snapshots were re-encrypted; SnapshotsDone
	// how many were already under the new key.
	Snapshots, SnapshotsDone int
}

// RekeyReport.Store values.
const (
	RekeyRotated     = "key registry re-encrypted under the new key"
	RekeyRewritten   = "every table and value log rewritten"
	RekeyAlreadyDone = "already under the new key"
)

// Suffixes of the directories a rewrite uses beside the store's.
const (
	rekeyNewSuffix = ".rekey-new"
	rekeyOldSuffix = ".rekey-old"
)

// Rekey changes the key a stopped node's store and snapshots are
// encrypted with. It supports every direction:
//
//   - key to key: Badger's data keys (which encrypt tables and value log)
//     are kept and its key registry is rewritten under the new key, as
//     `badger rotate` does; with Rewrite, all data is rewritten under
//     fresh data keys instead;
//   - no key to key (encrypt) and key to no key (decrypt): all data is
//     streamed into a new store beside the old one, which then replaces
//     it (the old files are deleted, not scrubbed).
//
// It holds the store's directory lock throughout, so a running node is
// ErrStoreInUse. It can be run again after an interruption: a store or
// snapshot already under the new key is left as it is, and a rewrite
// interrupted between its two renames is completed.
func Rekey(o RekeyOptions) (RekeyReport, error) {
	var rep RekeyReport
	if len(o.OldKey) == 0 && len(o.NewKey) == 0 {
		return rep, errors.New("rekey: neither an old nor a new key: nothing to do")
	}
	for _, k := range [][]byte{o.OldKey, o.NewKey} {
		if len(k) != 0 && len(k) != KeySize {
			return rep, fmt.Errorf("rekey: a key of %d bytes, want %d (AES-256)", len(k), KeySize)
		}
	}
	if len(o.OldKey) > 0 && bytes.Equal(o.OldKey, o.NewKey) {
		return rep, errors.New("rekey: the new key is the old key")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := resumeRewrite(o.Dir); err != nil {
		return rep, err
	}
	if _, err := os.Stat(filepath.Join(o.Dir, badger.KeyRegistryFileName)); err != nil {
		return rep, fmt.Errorf("rekey: no store in %s: %w", o.Dir, err)
	}
	unlock, err := lockDir(o.Dir)
	if err != nil {
		return rep, fmt.Errorf("rekey: %w", err)
	}
	defer unlock()

	switch under, err := registryKey(o.Dir, o.OldKey, o.NewKey); {
	case err != nil:
		return rep, fmt.Errorf("rekey: store %s: %w", o.Dir, err)
	case under == "new":
		rep.Store = RekeyAlreadyDone
	case len(o.OldKey) > 0 && len(o.NewKey) > 0 && !o.Rewrite:
		if err := rotateRegistry(o.Dir, o.OldKey, o.NewKey); err != nil {
			return rep, err
		}
		rep.Store = RekeyRotated
	default:
		if err := rewrite(o); err != nil {
			return rep, err
		}
		rep.Store = RekeyRewritten
	}
	if o.SnapshotDir != "" {
		if rep.Snapshots, rep.SnapshotsDone, err = rekeySnapshots(o.SnapshotDir, o.OldKey, o.NewKey); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// registryKey says which of the keys (nil for none) opens dir's key
// registry: "old" or "new", or an error that says what is wrong.
func registryKey(dir string, oldKey, newKey []byte) (string, error) {
	opens := func(k []byte) bool {
		kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true, EncryptionKey: k})
		if err != nil {
			return false
		}
		kr.Close()
		return true
	}
	switch {
	case opens(oldKey):
		return "old", nil
	case opens(newKey):
		return "new", nil
	case len(oldKey) == 0:
		return "", fmt.Errorf("%w; give the key it is encrypted with as the old key", ErrKeyRequired)
	case storeUnencrypted(dir):
		return "", fmt.Errorf("old key: %w", ErrNotEncrypted)
	}
	return "", fmt.Errorf("old key: %w", ErrWrongKey)
}

// rotateRegistry re-encrypts dir's key registry (its data keys) under
// newKey; Badger replaces the file atomically.
func rotateRegistry(dir string, oldKey, newKey []byte) error {
	opt := badger.KeyRegistryOptions{Dir: dir, ReadOnly: true, EncryptionKey: oldKey}
	kr, err := badger.OpenKeyRegistry(opt)
	if err != nil {
		return fmt.Errorf("rekey: read key registry of %s: %w", dir, err)
	}
	defer kr.Close()
	opt.ReadOnly, opt.EncryptionKey = false, newKey
	if err := badger.WriteKeyRegistry(kr, opt); err != nil {
		return fmt.Errorf("rekey: write key registry of %s: %w", dir, err)
	}
	return nil
}

// rewrite streams the store into dir.rekey-new under the new key (or
// none) and swaps it in. The caller holds dir's lock, so the source is
// opened without Badger's own.
func rewrite(o RekeyOptions) error {
	out := o.Dir + rekeyNewSuffix
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("rekey: remove a partial rewrite: %w", err)
	}
	srcOpts, err := badgerOptions(Options{Dir: o.Dir, SyncWrites: true, EncryptionKey: o.OldKey}, o.Logger)
	if err != nil {
		return err
	}
	// StreamDB reads at a timestamp: managed mode, as `badger stream`.
	src, err := badger.OpenManaged(srcOpts.WithBypassLockGuard(true))
	if err != nil {
		return fmt.Errorf("rekey: open store %s: %w", o.Dir, classifyOpenError(o.Dir, o.OldKey, err))
	}
	outOpts, err := badgerOptions(Options{Dir: out, SyncWrites: true, EncryptionKey: o.NewKey}, o.Logger)
	if err != nil {
		src.Close()
		return err
	}
	if err := src.StreamDB(outOpts); err != nil {
		src.Close()
		os.RemoveAll(out)
		return fmt.Errorf("rekey: rewrite store %s into %s: %w", o.Dir, out, err)
	}
	if err := src.Close(); err != nil {
		return fmt.Errorf("rekey: close store %s: %w", o.Dir, err)
	}
	// The one moment without a store at Dir lies between these renames;
	// resumeRewrite completes it, and Open refuses to start meanwhile.
	old := o.Dir + rekeyOldSuffix
	if err := os.Rename(o.Dir, old); err != nil {
		return fmt.Errorf("rekey: %w", err)
	}
	if err := os.Rename(out, o.Dir); err != nil {
		return fmt.Errorf("rekey: %w (run rekey again to complete)", err)
	}
	if err := syncDir(filepath.Dir(o.Dir)); err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("rekey: remove the old store: %w", err)
	}
	return nil
}

// resumeRewrite completes or undoes what an interrupted rewrite left:
// without dir, a complete dir.rekey-new replaces it (it was finished
// before dir was moved away); a leftover dir.rekey-old beside dir is
// removed.
func resumeRewrite(dir string) error {
	newDir, oldDir := dir+rekeyNewSuffix, dir+rekeyOldSuffix
	_, errDir := os.Stat(dir)
	_, errOld := os.Stat(oldDir)
	_, errNew := os.Stat(newDir)
	switch {
	case errDir == nil && errOld == nil:
		return os.RemoveAll(oldDir)
	case errors.Is(errDir, os.ErrNotExist) && errOld == nil && errNew == nil:
		if err := os.Rename(newDir, dir); err != nil {
			return fmt.Errorf("rekey: complete an interrupted rewrite: %w", err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return err
		}
		return os.RemoveAll(oldDir)
	case errors.Is(errDir, os.ErrNotExist) && errOld == nil:
		return os.Rename(oldDir, dir)
	}
	return nil
}

// checkInterruptedRekey refuses to open (and so create) a store whose
// directory an interrupted rewrite moved away.
func checkInterruptedRekey(dir string) error {
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(dir + rekeyOldSuffix); err == nil {
		return fmt.Errorf("an interrupted `meshward store rekey` left the store in %s; run it again to complete it", dir+rekeyOldSuffix)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// rekeySnapshots re-encrypts the snapshots of raft's file snapshot store
// in base one by one: each is written anew under the new key (same term
// and index, a later ID, so raft prefers it) and the old one removed, so
// an interruption leaves every snapshot readable under one of the keys.
func rekeySnapshots(base string, oldKey, newKey []byte) (done, already int, err error) {
	if _, err := os.Stat(filepath.Join(base, "snapshots")); errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	// A large retain: Create must not reap what is not rewritten yet.
	fs, err := raft.NewFileSnapshotStoreWithLogger(base, 1<<20, hclog.NewNullLogger())
	if err != nil {
		return 0, 0, fmt.Errorf("rekey: open snapshots in %s: %w", base, err)
	}
	metas, err := fs.List()
	if err != nil {
		return 0, 0, fmt.Errorf("rekey: list snapshots in %s: %w", base, err)
	}
	wrap := func(k []byte) raft.SnapshotStore {
		if len(k) == 0 {
			return fs
		}
		s, _ := EncryptedSnapshotStore(fs, k) // lengths checked by Rekey
		return s
	}
	from, to := wrap(oldKey), wrap(newKey)
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	for _, m := range metas {
		under, err := snapshotKey(fs, m.ID, oldKey, newKey)
		if err != nil {
			return done, already, fmt.Errorf("rekey: snapshot %s in %s: %w", m.ID, base, err)
		}
		if under == "new" {
			already++
			continue
		}
		if err := copySnapshot(from, to, m.ID, trans); err != nil {
			return done, already, fmt.Errorf("rekey: snapshot %s in %s: %w", m.ID, base, err)
		}
		if err := os.RemoveAll(filepath.Join(base, "snapshots", m.ID)); err != nil {
			return done, already, fmt.Errorf("rekey: remove the old snapshot %s: %w", m.ID, err)
		}
		done++
	}
	return done, already, nil
}

// snapshotKey says whether snapshot id is under the old or the new key
// (nil: not encrypted).
func snapshotKey(fs raft.SnapshotStore, id string, oldKey, newKey []byte) (string, error) {
	_, rc, err := fs.Open(id)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	head := make([]byte, len(snapMagic)+snapKeyIDLen)
	n, _ := io.ReadFull(rc, head)
	var keyID []byte // nil: not encrypted
	if n >= len(snapMagic) && bytes.Equal(head[:len(snapMagic)], []byte(snapMagic)) {
		keyID = head[len(snapMagic):n]
	}
	is := func(k []byte) bool {
		if len(k) == 0 {
			return keyID == nil
		}
		return keyID != nil && bytes.Equal(keyID, snapKeyID(k))
	}
	switch {
	case is(oldKey):
		return "old", nil
	case is(newKey):
		return "new", nil
	case keyID == nil:
		return "", ErrSnapshotNotEncrypted
	}
	return "", ErrSnapshotWrongKey
}

func copySnapshot(from, to raft.SnapshotStore, id string, trans raft.Transport) error {
	meta, rc, err := from.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	sink, err := to.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, trans)
	if err != nil {
		return err
	}
	n, err := io.Copy(sink, rc)
	if err == nil && n != meta.Size {
		err = fmt.Errorf("read %d bytes, its metadata says %d", n, meta.Size)
	}
	if err != nil {
		return errors.Join(err, sink.Cancel())
	}
	return sink.Close()
}
