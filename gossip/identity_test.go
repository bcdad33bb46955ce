package gossip

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

func TestIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	sk1, raw1, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	sk2, raw2, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := peer.IDFromPrivateKey(sk1)
	id2, _ := peer.IDFromPrivateKey(sk2)
	if id1 != id2 || !raw1.Equal(raw2) {
		t.Fatalf("identity changed across loads: %s vs %s", id1, id2)
	}
	if len(raw1) != ed25519.PrivateKeySize {
		t.Fatalf("raw key is %d bytes", len(raw1))
	}
	// The raw key signs as the peer ID.
	if got := intel.NodeID(raw1.Public().(ed25519.PublicKey)); got != id1.String() {
		t.Fatalf("NodeID of raw key %s, peer ID %s", got, id1)
	}
	if other, _, err := LoadOrCreateIdentity(t.TempDir()); err != nil {
		t.Fatal(err)
	} else if id, _ := peer.IDFromPrivateKey(other); id == id1 {
		t.Fatal("two data directories share an identity")
	}
}

func TestIdentityRefusesLoosePermissions(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadOrCreateIdentity(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFile)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadOrCreateIdentity(dir)
		if !errors.Is(err, ErrKeyPermissions) {
			t.Fatalf("mode %04o: err %v, want ErrKeyPermissions", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateIdentity(dir); err != nil {
		t.Fatalf("owner-only read-only key refused: %v", err)
	}
}

func TestIdentityRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateIdentity(dir); err == nil {
		t.Fatal("garbage key file accepted")
	}
}
