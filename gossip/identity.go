package gossip

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// KeyFile is the name of the node's identity key inside its data directory.
const KeyFile = "node.key"

const maxKeyFileSize = 4096

// ErrKeyPermissions is returned when the identity key file may be read by
// users other than its owner.
var ErrKeyPermissions = errors.New("node key is readable by group or others")

// LoadOrCreateIdentity returns the node's ed25519 identity, stored at
// <dataDir>/node.key (a libp2p-marshalled private key, mode 0600). The key is
// created if the file does not exist; a file that group or others may read is
// refused with an error wrapping ErrKeyPermissions. The second result is the
// raw 64-byte ed25519 key for intel.Seal.
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, ed25519.PrivateKey, error) {
	if dataDir == "" {
		return nil, nil, errors.New("load identity: data directory is empty")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("load identity: create data directory: %w", err)
	}
	path := filepath.Join(dataDir, KeyFile)
	sk, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		sk, err = createKey(dataDir, path)
	}
	if err != nil {
		return nil, nil, err
	}
	raw, err := sk.Raw()
	if err != nil {
		return nil, nil, fmt.Errorf("load identity: raw key: %w", err)
	}
	if len(raw) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("load identity: %s: raw key is %d bytes, want %d", path, len(raw), ed25519.PrivateKeySize)
	}
	return sk, ed25519.PrivateKey(raw), nil
}

func readKey(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // fs.ErrNotExist is handled by the caller
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load identity: stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("load identity: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("load identity: %s has mode %04o: %w; run chmod 600 %s", path, perm, ErrKeyPermissions, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load identity: read %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("load identity: %s is larger than any key", path)
	}
	sk, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("load identity: decode %s: %w", path, err)
	}
	if sk.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("load identity: %s holds a %s key, want Ed25519", path, sk.Type())
	}
	return sk, nil
}

// createKey writes a new key next to path and links it into place, so that
// two processes racing to create the key end up sharing one.
func createKey(dir, path string) (crypto.PrivKey, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("load identity: generate key: %w", err)
	}
	b, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("load identity: encode key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".node.key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("load identity: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("load identity: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("load identity: sync key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKey(path)
		}
		return nil, fmt.Errorf("load identity: install key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return sk, nil
}
