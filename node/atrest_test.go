package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

func writeStoreKey(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(hex.EncodeToString(store.NewKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNodeStoreEncryption starts a node on an encrypted store, stops it,
// and starts it again with another key and with none: both refuse with an
// error naming the key file or the fields to set, never a new store; with
// the right key, the node starts on the same Raft state.
func TestNodeStoreEncryption(t *testing.T) {
	dir := t.TempDir()
	keys := t.TempDir()
	right := writeStoreKey(t, keys, "right.key")
	wrong := writeStoreKey(t, keys, "wrong.key")
	operator, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Consensus.Bootstrap = true
	cfg.Consensus.BootstrapOperators = []string{intel.FormatOperatorPublicKey(operator) + " rekey-test"}
	cfg.Store.EncryptionKeyFile = right
	start := func(c Config) (*Node, error) { return Start(context.Background(), c, Options{}) }

	n, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, err := n.deps.Store.RaftStore().LastIndex()
	if err != nil || first == 0 {
		t.Fatalf("last index %d, %v", first, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	bad := cfg
	bad.Store.EncryptionKeyFile = wrong
	if n, err := start(bad); err == nil || !errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), wrong) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("wrong key: %v", err)
	}
	none := cfg
	none.Store.EncryptionKeyFile = ""
	if n, err := start(none); err == nil || !errors.Is(err, store.ErrKeyRequired) || !strings.Contains(err.Error(), "store.encryption_key_file") {
		if n != nil {
			n.Close()
		}
		t.Fatalf("no key: %v", err)
	}
	env := cfg
	env.Store.EncryptionKeyFile = ""
	env.Store.EncryptionKeyEnv = "MESHWARD_TEST_NODE_STORE_KEY"
	if n, err := start(env); err == nil || !strings.Contains(err.Error(), "MESHWARD_TEST_NODE_STORE_KEY is not set") {
		if n != nil {
			n.Close()
		}
		t.Fatalf("unset variable: %v", err)
	}
	if err := os.Chmod(right, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := start(cfg); !errors.Is(err, store.ErrKeyPermissions) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("loose key file: %v", err)
	}
	if err := os.Chmod(right, 0o600); err != nil {
		t.Fatal(err)
	}

	n, err = start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.deps.Store.RaftStore().LastIndex(); err != nil || again < first {
		n.Close()
		t.Fatalf("after reopening, last index %d (%v) < %d: a new store?", again, err, first)
	}

	// Rekeyed while stopped, it starts with the new key only.
	if _, err := Rekey(dir, n.deps.storeKey, store.Key{Bytes: store.NewKey()}, false); !errors.Is(err, store.ErrStoreInUse) {
		t.Errorf("rekey of a running node: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	oldKey, err := loadStoreKey(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	newPath := writeStoreKey(t, keys, "new.key")
	newKey, err := loadStoreKey(store.Config{EncryptionKeyFile: newPath})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Rekey(dir, oldKey, newKey, false); err != nil || rep.Store != store.RekeyRotated {
		t.Fatalf("rekey: %+v, %v", rep, err)
	}
	if n, err := start(cfg); !errors.Is(err, store.ErrWrongKey) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("old key after rekey: %v", err)
	}
	rekeyed := cfg
	rekeyed.Store.EncryptionKeyFile = newPath
	n, err = start(rekeyed)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if again, err := n.deps.Store.RaftStore().LastIndex(); err != nil || again < first {
		t.Fatalf("after rekey, last index %d (%v) < %d", again, err, first)
	}
}

// TestOpenSnapshotsChecksTheKey: a snapshot under another key, or not
// encrypted, stops the start with an error that says so.
func TestOpenSnapshotsChecksTheKey(t *testing.T) {
	dir := t.TempDir()
	keyA := store.Key{Bytes: store.NewKey(), Source: "key A"}
	keyB := store.Key{Bytes: store.NewKey(), Source: "key B"}
	write := func(k store.Key) {
		t.Helper()
		snaps, err := openSnapshots(dir, k)
		if err != nil {
			t.Fatal(err)
		}
		sink, err := snaps.Create(1, 5, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write([]byte("state")); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(keyA)
	if _, err := openSnapshots(dir, keyA); err != nil {
		t.Fatal(err)
	}
	if _, err := openSnapshots(dir, keyB); !errors.Is(err, store.ErrSnapshotWrongKey) || !strings.Contains(err.Error(), "key B") {
		t.Fatalf("another key: %v", err)
	}
	plain := t.TempDir()
	dir, keyA = plain, store.Key{}
	write(keyA)
	if _, err := openSnapshots(plain, keyB); !errors.Is(err, store.ErrSnapshotNotEncrypted) {
		t.Fatalf("plaintext snapshot: %v", err)
	}
}

// TestStoreEncryptionConfig: the section's fields parse from YAML, and a
// bad one is named by its path.
func TestStoreEncryptionConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("store:\n  encryption_key_file: /etc/meshward/store.key\n  encryption_key_env: MESHWARD_STORE_KEY\n  encryption_key_rotation: 72h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Store; c.EncryptionKeyFile != "/etc/meshward/store.key" || c.EncryptionKeyEnv != "MESHWARD_STORE_KEY" || c.EncryptionKeyRotation.Hours() != 72 || c.Retention != store.DefaultRetention {
		t.Fatalf("store section %+v", c)
	}
	if _, err := ParseConfig([]byte("store:\n  encryption_key_env: \"MESHWARD STORE KEY\"\n")); err == nil || !strings.Contains(err.Error(), "store.encryption_key_env") {
		t.Fatalf("bad variable name: %v", err)
	}
	if _, err := ParseConfig([]byte("store:\n  encryption_key_file: k\n  encryption_key_rotation: 0s\n")); err == nil || !strings.Contains(err.Error(), "store.encryption_key_rotation") {
		t.Fatalf("zero rotation: %v", err)
	}
}
