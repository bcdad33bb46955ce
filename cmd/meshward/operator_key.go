package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/pflag"
)

// Operator keys: an ed25519 private key in a PKCS#8 PEM file ("PRIVATE
// KEY", readable by openssl), mode 0600, found by --operator-key, then
// $MESHWARD_OPERATOR_KEY, then operator.key in the user's meshward
// configuration directory.
const (
	envOperatorKey      = "MESHWARD_OPERATOR_KEY"
	operatorKeyFileName = "operator.key"
	operatorKeyPEMType  = "PRIVATE KEY"
	maxOperatorKeyFile  = 4096
)

// operatorFlags locate the operator key of the commands that sign.
type operatorFlags struct {
	keyFile string
}

func (o *operatorFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.keyFile, "operator-key", "", "operator key file that signs the command (default: $"+envOperatorKey+", else "+defaultOperatorKeyHint+")")
}

const defaultOperatorKeyHint = "$XDG_CONFIG_HOME/meshward/" + operatorKeyFileName

// defaultOperatorKeyPath is operator.key in the user's meshward
// configuration directory ($XDG_CONFIG_HOME/meshward on Linux).
func defaultOperatorKeyPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the operator key: %w; name one with --operator-key or $%s", err, envOperatorKey)
	}
	return filepath.Join(dir, "meshward", operatorKeyFileName), nil
}

// path is the key file in use and where its name came from.
func (o *operatorFlags) path() (path, from string, err error) {
	if o.keyFile != "" {
		return o.keyFile, "--operator-key", nil
	}
	if p := os.Getenv(envOperatorKey); p != "" {
		return p, "$" + envOperatorKey, nil
	}
	p, err := defaultOperatorKeyPath()
	return p, "the default path", err
}

// errNoOperatorKey says how to make and register an operator key.
func errNoOperatorKey(path, from string) error {
	return fmt.Errorf(`no operator key at %s (%s). Mesh-wide commands are signed with an operator key:
  make one:      meshward operator keygen
  register it:   on the mesh's first node, put the public key it prints in consensus.bootstrap_operators;
                 on a running mesh, an admin operator runs meshward operator add "<public key>" --role admin --name <you>
  or use another key with --operator-key FILE or $%s`, path, from, envOperatorKey)
}

// load reads the operator key in use.
func (o *operatorFlags) load() (ed25519.PrivateKey, string, error) {
	path, from, err := o.path()
	if err != nil {
		return nil, "", err
	}
	key, err := readOperatorKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", errNoOperatorKey(path, from)
	}
	return key, path, err
}

// readOperatorKey reads an operator key file, refusing one that group or
// others may read.
func readOperatorKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("operator key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("operator key %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("operator key %s has mode %04o and may be read by others; run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxOperatorKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read operator key %s: %w", path, err)
	}
	if len(b) > maxOperatorKeyFile {
		return nil, fmt.Errorf("operator key %s is larger than any key", path)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != operatorKeyPEMType {
		return nil, fmt.Errorf("operator key %s is not a PEM %q block (make one with meshward operator keygen)", path, operatorKeyPEMType)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("operator key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("operator key %s holds a %T, want an ed25519 key", path, k)
	}
	return priv, nil
}

// writeOperatorKey writes priv to path with mode 0600, creating its
// directory (0700) if needed; an existing file is never replaced.
func writeOperatorKey(path string, priv ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode operator key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write operator key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; it is not replaced (remove it first, or write the new key elsewhere with --out)", path)
	}
	if err != nil {
		return fmt.Errorf("write operator key: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write operator key %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := pem.Encode(f, &pem.Block{Type: operatorKeyPEMType, Bytes: der}); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write operator key %s: %w", path, err)
	}
	return nil
}
