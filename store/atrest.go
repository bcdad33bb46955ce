package store

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// KeySize is the size of the store's encryption key: AES-256.
const KeySize = 32

// Errors of an encrypted store, returned (wrapped) by Open and Rekey.
var (
	// ErrKeyRequired: the store is encrypted and no key was given.
	ErrKeyRequired = errors.New("the store is encrypted and no encryption key was given")
	// ErrWrongKey: the store is encrypted with another key.
	ErrWrongKey = errors.New("the encryption key does not match the key the store was encrypted with")
	// ErrNotEncrypted: a key was given for a store that is not encrypted.
	ErrNotEncrypted = errors.New("an encryption key was given but the store is not encrypted (run `meshward store rekey --new-key-file ...` with the node stopped to encrypt it)")
	// ErrKeyPermissions: a key file is readable by group or others.
	ErrKeyPermissions = errors.New("key file readable by group or others")
	// ErrStoreInUse: another process (a running node) holds the store.
	ErrStoreInUse = errors.New("the store is in use by another process (stop the node first)")
)

// Key is a store encryption key and where it came from, so that errors
// can name the file or variable to fix.
type Key struct {
	// Bytes is the AES-256 key; nil means no encryption.
	Bytes []byte
	// Source names where it came from ("store.encryption_key_file
	// /etc/meshward/store.key", "environment variable MESHWARD_STORE_KEY").
	Source string
}

// Encrypted reports whether k holds a key.
func (k Key) Encrypted() bool { return len(k.Bytes) > 0 }

// LoadKey returns the key cfg configures, or a zero Key when it
// configures none. fileField and envField name the fields in errors
// (the node passes "store.encryption_key_file"; a CLI its flags).
//
// The environment variable, when configured and set, wins; otherwise
// the file is read. A variable holds the key as text: 64 hex digits or
// the base64 (standard or URL alphabet, padded or not) of 32 bytes. A
// file holds either exactly 32 raw bytes, or the same text as the
// variable (surrounding whitespace ignored); it must be a regular file
// not readable by group or others (mode 0600 or 0400).
func LoadKey(file, env, fileField, envField string) (Key, error) {
	if env != "" {
		if v, ok := os.LookupEnv(env); ok && v != "" {
			src := fmt.Sprintf("%s: environment variable %s", envField, env)
			b, err := ParseKey([]byte(v), false)
			if err != nil {
				return Key{}, fmt.Errorf("%s: %w", src, err)
			}
			return Key{Bytes: b, Source: src}, nil
		}
		if file == "" {
			return Key{}, fmt.Errorf("%s: environment variable %s is not set; set it to the store's key (64 hex digits), or remove the field to run unencrypted", envField, env)
		}
	}
	if file == "" {
		return Key{}, nil
	}
	src := fmt.Sprintf("%s %s", fileField, file)
	b, err := readKeyFile(file)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", fileField, err)
	}
	return Key{Bytes: b, Source: src}, nil
}

// maxKeyFile bounds what is read of a key file: the longest text form
// with generous whitespace.
const maxKeyFile = 4096

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key: stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read key: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("read key: %s has mode %04o: %w; run chmod 600 %s", path, perm, ErrKeyPermissions, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key: %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("read key: %s is larger than any key form", path)
	}
	k, err := ParseKey(b, true)
	if err != nil {
		return nil, fmt.Errorf("read key: %s: %w", path, err)
	}
	return k, nil
}

// ParseKey decodes a key: 64 hex digits, or base64 of 32 bytes, with
// surrounding whitespace ignored; when raw is true, also exactly 32 raw
// bytes (a file, not a variable). 32 bytes that are all printable text
// are taken for a mistyped text key rather than a raw one: random bytes
// are that only once in 10^14 keys.
func ParseKey(b []byte, raw bool) ([]byte, error) {
	if raw && len(b) == KeySize && !isText(b) {
		return bytes.Clone(b), nil
	}
	s := strings.TrimSpace(string(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	want := "64 hex digits or base64 of 32 bytes"
	if raw {
		want = "32 raw bytes, " + want
	}
	return nil, fmt.Errorf("not an AES-256 key (%d bytes): want %s (make one with `meshward store keygen`)", len(b), want)
}

func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// NewKey returns a fresh random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k) // never fails (crypto/rand)
	return k
}

// WriteKeyFile writes a fresh key to path as 64 hex digits and a newline,
// mode 0600; it refuses to overwrite an existing file.
func WriteKeyFile(path string) ([]byte, error) {
	k := NewKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	return k, f.Close()
}

// classifyOpenError turns Badger's "Encryption key mismatch" into the
// error that says what is wrong, by checking whether the store's key
// registry opens without a key; it also names a held directory lock.
func classifyOpenError(dir string, key []byte, err error) error {
	switch {
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		if len(key) == 0 {
			return ErrKeyRequired
		}
		if storeUnencrypted(dir) {
			return ErrNotEncrypted
		}
		return ErrWrongKey
	case strings.Contains(err.Error(), "Cannot acquire directory lock"):
		return fmt.Errorf("%w: %v", ErrStoreInUse, err)
	}
	return err
}

// storeUnencrypted reports whether dir's key registry opens without a
// key, that is whether the store was never encrypted.
func storeUnencrypted(dir string) bool {
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true})
	if err != nil {
		return false
	}
	kr.Close()
	return true
}
