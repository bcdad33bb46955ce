package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshward/meshward/store"
)

func runStoreCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func openKeyed(dataDir, keyFile string) (*store.Store, error) {
	o := store.DefaultOptions(filepath.Join(dataDir, "store"))
	if keyFile != "" {
		k, err := store.LoadKey(keyFile, "", "key", "")
		if err != nil {
			return nil, err
		}
		o.EncryptionKey = k.Bytes
	}
	return store.Open(o)
}

// TestStoreRekeyCommand encrypts a node's store with `meshward store
// rekey`, changes its key, and decrypts it again: after each step the data
// opens with the new key only; a store held open is refused.
func TestStoreRekeyCommand(t *testing.T) {
	dataDir, keys := t.TempDir(), t.TempDir()
	k1, k2 := filepath.Join(keys, "k1"), filepath.Join(keys, "k2")
	for _, k := range []string{k1, k2} {
		if out, err := runStoreCmd(t, "store", "keygen", k); err != nil || !strings.Contains(out, k) {
			t.Fatalf("keygen: %q %v", out, err)
		}
	}
	if _, err := runStoreCmd(t, "store", "keygen", k1); !errors.Is(err, os.ErrExist) {
		t.Fatalf("keygen over an existing key: %v", err)
	}
	s, err := openKeyed(dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	seq, err := s.NextSeq()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runStoreCmd(t, "store", "rekey", "--data-dir", dataDir, "--new-key-file", k1); !errors.Is(err, store.ErrStoreInUse) || !strings.Contains(err.Error(), "stop the node") {
		t.Fatalf("rekey of a store in use: %v", err)
	}
	s.Close()

	steps := []struct {
		args     []string
		key, old string
	}{
		{[]string{"--new-key-file", k1}, k1, ""},
		{[]string{"--old-key-file", k1, "--new-key-file", k2}, k2, k1},
		{[]string{"--old-key-file", k2, "--new-key-file", k1, "--rewrite"}, k1, k2},
		{[]string{"--old-key-file", k1, "--decrypt"}, "", k1},
	}
	for _, st := range steps {
		out, err := runStoreCmd(t, append([]string{"store", "rekey", "--data-dir", dataDir}, st.args...)...)
		if err != nil {
			t.Fatalf("rekey %v: %v", st.args, err)
		}
		if !strings.Contains(out, "store "+dataDir) {
			t.Errorf("rekey %v printed %q", st.args, out)
		}
		if s, err := openKeyed(dataDir, st.old); err == nil {
			s.Close()
			t.Fatalf("after rekey %v the store opens with the old key %q", st.args, st.old)
		}
		s, err := openKeyed(dataDir, st.key)
		if err != nil {
			t.Fatalf("after rekey %v: %v", st.args, err)
		}
		next, err := s.NextSeq()
		s.Close()
		if err != nil || next <= seq {
			t.Fatalf("after rekey %v: sequence %d (%v), want above %d", st.args, next, err, seq)
		}
		seq = next
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--new-key-file", k1}, "no store"},
		{[]string{"--data-dir", dataDir}, "--decrypt"},
		{[]string{"--data-dir", dataDir, "--old-key-file", k1, "--new-key-file", k2}, "(old key from --old-key-file " + k1 + ")"},
		{[]string{"--data-dir", dataDir, "--decrypt", "--new-key-file", k2}, "one or the other"},
		{[]string{}, "--config node.yaml or --data-dir"},
	} {
		args := append([]string{"store", "rekey"}, tc.args...)
		if tc.want == "no store" {
			args = append(args, "--data-dir", filepath.Join(t.TempDir(), "none"))
		}
		if _, err := runStoreCmd(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
