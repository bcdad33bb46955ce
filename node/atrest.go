package node

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/store"
)

// Data at rest. With store.encryption_key_file or store.encryption_key_env
// the store (envelopes, sightings, decisions, the Raft log and stable
// store) is encrypted by Badger and every Raft snapshot by
// store.EncryptedSnapshotStore, under the same key (the snapshots under a
// key derived from it). The node key (data_dir/node.key), the peer book
// and raft's snapshot metadata (index, term, the node IDs of the Raft
// configuration) are not encrypted.

// retainSnapshots is how many Raft snapshots are kept in data_dir/raft.
const retainSnapshots = 2

// loadStoreKey loads the key the store section configures; a zero Key
// when none is.
func loadStoreKey(c store.Config) (store.Key, error) {
	k, err := store.LoadKey(c.EncryptionKeyFile, c.EncryptionKeyEnv, "store.encryption_key_file", "store.encryption_key_env")
	if err != nil {
		return store.Key{}, fmt.Errorf("store encryption key: %w", err)
	}
	return k, nil
}

// openStore opens the node's store in data_dir/store, encrypted with key
// when it holds one. A key that does not fit the store is an error that
// names where the key came from, or the fields to set.
func openStore(dataDir string, c store.Config, key store.Key) (*store.Store, error) {
	opts := store.DefaultOptions(filepath.Join(dataDir, "store"))
	opts.EncryptionKey = key.Bytes
	opts.EncryptionKeyRotation = c.EncryptionKeyRotation
	s, err := store.Open(opts)
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, store.ErrKeyRequired):
		return nil, fmt.Errorf("%w; set store.encryption_key_file or store.encryption_key_env to its key", err)
	case errors.Is(err, store.ErrWrongKey), errors.Is(err, store.ErrNotEncrypted):
		return nil, fmt.Errorf("%w (key from %s)", err, key.Source)
	}
	return nil, err
}

// openSnapshots opens raft's file snapshot store in data_dir/raft,
// encrypted with key when it holds one. It opens the newest snapshot
// once, so that a snapshot under another key, or not encrypted, is an
// error at start that says so rather than raft's "failed to load any
// existing snapshots".
func openSnapshots(dataDir string, key store.Key) (raft.SnapshotStore, error) {
	dir := filepath.Join(dataDir, "raft")
	fs, err := raft.NewFileSnapshotStore(dir, retainSnapshots, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if !key.Encrypted() {
		return fs, nil
	}
	snaps, err := store.EncryptedSnapshotStore(fs, key.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key.Source, err)
	}
	metas, err := fs.List()
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	if len(metas) > 0 {
		_, rc, err := snaps.Open(metas[0].ID)
		if err != nil {
			return nil, fmt.Errorf("raft snapshot in %s (%s): %w", dir, key.Source, err)
		}
		rc.Close()
	}
	return snaps, nil
}

// Rekey changes the key a stopped node's store (data_dir/store) and Raft
// snapshots (data_dir/raft) are encrypted with (store.Rekey); a zero Key
// means not encrypted. Errors name where the offending key came from.
func Rekey(dataDir string, oldKey, newKey store.Key, rewrite bool) (store.RekeyReport, error) {
	rep, err := store.Rekey(store.RekeyOptions{
		Dir:         filepath.Join(dataDir, "store"),
		SnapshotDir: filepath.Join(dataDir, "raft"),
		OldKey:      oldKey.Bytes,
		NewKey:      newKey.Bytes,
		Rewrite:     rewrite,
	})
	switch {
	case err == nil:
	case oldKey.Encrypted() && (errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrNotEncrypted) || errors.Is(err, store.ErrSnapshotWrongKey)):
		err = fmt.Errorf("%w (old key from %s)", err, oldKey.Source)
	}
	return rep, err
}
