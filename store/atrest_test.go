package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/internal/confcheck"
)

const plainMarker = "MESHWARD-PLAINTEXT-MARKER-7f3a"

// fillStore writes what every family of an encrypted store must hide:
// an envelope and a Raft log entry carrying plainMarker.
func fillStore(t *testing.T, s *Store) {
	t.Helper()
	k := newKey(t)
	put(t, s, sighting(t, k, 1, mustIndicator(t, "203.0.113.7"), t0), t0)
	if err := s.RaftStore().StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte(plainMarker), AppendedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

func checkFilled(t *testing.T, s *Store) {
	t.Helper()
	var l raft.Log
	if err := s.RaftStore().GetLog(1, &l); err != nil || string(l.Data) != plainMarker {
		t.Fatalf("raft log entry 1 = %q, %v", l.Data, err)
	}
	if n, err := s.CountEnvelopes(); err != nil || n != 1 {
		t.Fatalf("%d envelopes, %v; want 1", n, err)
	}
}

// grepDir fails the test when any file under dir contains one of needles.
func grepDir(t *testing.T, dir string, needles ...string) {
	t.Helper()
	for _, f := range findInDir(t, dir, needles...) {
		t.Errorf("%s holds %q in plaintext", f[0], f[1])
	}
}

// findInDir returns the files under dir that contain one of needles,
// with the needle found.
func findInDir(t *testing.T, dir string, needles ...string) (found [][2]string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, [2]string{path, n})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func encOptions(dir string, key []byte) Options {
	o := DefaultOptions(dir)
	o.EncryptionKey = key
	return o
}

// TestEncryptedStore opens an encrypted store, closes it, and reopens it
// with a wrong key, without a key and with the right one: only the last
// opens, and finds the data intact; no file holds the data in plaintext.
func TestEncryptedStore(t *testing.T) {
	dir := t.TempDir()
	key := NewKey()
	s, err := Open(encOptions(dir, key))
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s)
	checkFilled(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	grepDir(t, dir, plainMarker, "ssh-bruteforce", "203.0.113.7")

	for _, tc := range []struct {
		name string
		key  []byte
		want error
	}{
		{"wrong key", NewKey(), ErrWrongKey},
		{"no key", nil, ErrKeyRequired},
	} {
		s, err := Open(encOptions(dir, tc.key))
		if err == nil {
			s.Close()
			t.Fatalf("%s: encrypted store opened", tc.name)
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("%s: got %v, want %v naming %s", tc.name, err, tc.want, dir)
		}
	}
	if _, err := Open(encOptions(dir, key[:16])); err == nil || !strings.Contains(err.Error(), "want 32") {
		t.Fatalf("a 16-byte key: %v", err)
	}

	s = openStore(t, encOptions(dir, key))
	checkFilled(t, s)
}

// TestKeyForUnencryptedStore refuses a key for a store written without
// one, and leaves the store as it was.
func TestKeyForUnencryptedStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s)
	s.Close()
	if len(findInDir(t, dir, plainMarker)) == 0 {
		t.Fatal("the marker is not found in an unencrypted store: the plaintext check would see nothing")
	}
	if s, err := Open(encOptions(dir, NewKey())); !errors.Is(err, ErrNotEncrypted) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("key for an unencrypted store: %v, want ErrNotEncrypted", err)
	}
	checkFilled(t, openStore(t, DefaultOptions(dir)))
}

// TestEncryptedInMemory: tests and the testnet may encrypt in memory.
func TestEncryptedInMemory(t *testing.T) {
	s := openStore(t, Options{InMemory: true, EncryptionKey: NewKey()})
	fillStore(t, s)
	checkFilled(t, s)
}

func writeFile(t *testing.T, b []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "store.key")
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKey(t *testing.T) {
	key := NewKey()
	const ff, ef = "store.encryption_key_file", "store.encryption_key_env"
	for _, form := range []struct {
		name string
		b    []byte
	}{
		{"raw", key},
		{"hex", []byte(hex.EncodeToString(key) + "\n")},
		{"base64", []byte("  " + base64.StdEncoding.EncodeToString(key) + "\n")},
		{"base64url", []byte(base64.RawURLEncoding.EncodeToString(key))},
	} {
		p := writeFile(t, form.b, 0o600)
		k, err := LoadKey(p, "", ff, ef)
		if err != nil || !bytes.Equal(k.Bytes, key) || !strings.Contains(k.Source, p) {
			t.Errorf("%s: %x %q %v", form.name, k.Bytes, k.Source, err)
		}
	}

	// Loose permissions are refused, naming the file and the fix.
	p := writeFile(t, []byte(hex.EncodeToString(key)), 0o644)
	if _, err := LoadKey(p, "", ff, ef); !errors.Is(err, ErrKeyPermissions) || !strings.Contains(err.Error(), "chmod 600 "+p) || !strings.HasPrefix(err.Error(), ff) {
		t.Errorf("mode 0644: %v", err)
	}
	// Not a key.
	for _, b := range []string{"short", hex.EncodeToString(key[:16]), strings.Repeat("z", 64)} {
		p := writeFile(t, []byte(b), 0o600)
		if _, err := LoadKey(p, "", ff, ef); err == nil || !strings.Contains(err.Error(), "not an AES-256 key") {
			t.Errorf("%q: %v", b, err)
		}
	}
	if _, err := LoadKey(filepath.Join(t.TempDir(), "absent"), "", ff, ef); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}

	// The variable wins when set; unset, the file is used, or it is an
	// error naming the variable when there is no file.
	const env = "MESHWARD_TEST_STORE_KEY"
	other := NewKey()
	t.Setenv(env, hex.EncodeToString(other))
	fileKey := writeFile(t, key, 0o600)
	if k, err := LoadKey(fileKey, env, ff, ef); err != nil || !bytes.Equal(k.Bytes, other) || !strings.Contains(k.Source, env) {
		t.Errorf("variable set: %x %q %v", k.Bytes, k.Source, err)
	}
	t.Setenv(env, "")
	if k, err := LoadKey(fileKey, env, ff, ef); err != nil || !bytes.Equal(k.Bytes, key) {
		t.Errorf("variable empty, file set: %x %v", k.Bytes, err)
	}
	if _, err := LoadKey("", env, ff, ef); err == nil || !strings.Contains(err.Error(), env+" is not set") {
		t.Errorf("variable unset, no file: %v", err)
	}
	// Raw bytes are not accepted from the environment. (An environment
	// value cannot hold a NUL byte: replace any in the random key.)
	raw := bytes.ReplaceAll(bytes.Clone(key), []byte{0}, []byte{1})
	t.Setenv(env, string(raw))
	if _, err := LoadKey("", env, ff, ef); err == nil || !strings.Contains(err.Error(), env) {
		t.Errorf("raw bytes in the variable: %v", err)
	}
	if k, err := LoadKey("", "", ff, ef); err != nil || k.Encrypted() {
		t.Errorf("nothing configured: %+v %v", k, err)
	}
}

func TestWriteKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "store.key")
	k, err := WriteKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadKey(p, "", "f", "e")
	if err != nil || !bytes.Equal(got.Bytes, k) {
		t.Fatalf("%x %v, want %x", got.Bytes, err, k)
	}
	if _, err := WriteKeyFile(p); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
}

func TestConfigEncryptionFields(t *testing.T) {
	c := DefaultConfig()
	if c.Encrypted() || c.EncryptionKeyRotation != DefaultKeyRotation {
		t.Fatalf("defaults: %+v", c)
	}
	c.EncryptionKeyEnv = "1BAD-NAME"
	c.EncryptionKeyFile = "/etc/meshward/store.key"
	c.EncryptionKeyRotation = 0
	fields := confcheck.Fields(c.Validate())
	var names []string
	for _, f := range fields {
		names = append(names, f.Field)
	}
	if strings.Join(names, ",") != "encryption_key_env,encryption_key_rotation" {
		t.Fatalf("fields %v", names)
	}
	c = DefaultConfig()
	c.EncryptionKeyEnv = "MESHWARD_STORE_KEY"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
