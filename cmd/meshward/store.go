package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/node"
	"github.com/meshward/meshward/store"
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Manage a node's data at rest (offline: the node must be stopped)",
		Long: `A node keeps its state in data_dir/store (Badger: sightings, decisions, the
Raft log) and data_dir/raft (Raft snapshots). With store.encryption_key_file or
store.encryption_key_env in the configuration both are encrypted with one
AES-256 key. These commands work on the files directly, never through a
running node: they refuse while a node holds the store.`,
	}
	cmd.AddCommand(newStoreKeygenCmd(), newStoreRekeyCmd())
	return cmd
}

func newStoreKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen FILE",
		Short: "Write a new random store encryption key to FILE (mode 0600)",
		Long: `keygen writes 32 random bytes as 64 hex digits to FILE, created with mode 0600;
it never overwrites a file. Point store.encryption_key_file at it, or put its
contents in the environment variable store.encryption_key_env names.`,
		Example: "  meshward store keygen /etc/meshward/store.key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := store.WriteKeyFile(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote a new store key to %s\n", args[0])
			return nil
		},
	}
}

func newStoreRekeyCmd() *cobra.Command {
	var (
		configPath, dataDir string
		oldFile, oldEnv     string
		newFile, newEnv     string
		rewrite, decrypt    bool
	)
	cmd := &cobra.Command{
		Use:   "rekey",
		Short: "Encrypt, decrypt or change the key of a stopped node's store and snapshots",
		Long: `rekey changes the key a stopped node's store and Raft snapshots are encrypted
with. Every direction is supported:

  old key -> new key   Badger's key registry is re-encrypted under the new key
                       (fast; the data keys stay). --rewrite rewrites every
                       table under fresh data keys instead: use it when the
                       old key may be known to someone.
  no key  -> new key   encrypt: the store is rewritten into a new directory
                       that replaces the old one (the old files are deleted,
                       not scrubbed from the disk).
  old key -> none      decrypt (--decrypt): the same, without a key.

Keys are files (32 raw bytes, 64 hex digits or base64; mode 0600) or
environment variables (hex or base64). With --config the data directory and,
unless given, the old key come from the node's configuration; afterwards point
the configuration at the new key. A running node holds the store's directory
lock: rekey refuses until it is stopped. If rekey is interrupted, run it again
with the same keys: it completes what was left.`,
		Example: `  meshward store keygen /etc/meshward/store.key
  meshward store rekey --config /etc/meshward/node.yaml --new-key-file /etc/meshward/store.key
  meshward store rekey --data-dir /var/lib/meshward --old-key-file old.key --new-key-file new.key
  meshward store rekey --data-dir /var/lib/meshward --old-key-env OLD_KEY --decrypt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var oldKey, newKey store.Key
			var err error
			switch {
			case configPath != "" && dataDir != "":
				return errors.New("give --config or --data-dir, not both")
			case configPath != "":
				cfg, err := node.LoadConfig(configPath)
				if err != nil {
					return err
				}
				dataDir = cfg.DataDir
				if oldFile == "" && oldEnv == "" {
					if oldKey, err = store.LoadKey(cfg.Store.EncryptionKeyFile, cfg.Store.EncryptionKeyEnv, "store.encryption_key_file", "store.encryption_key_env"); err != nil {
						return fmt.Errorf("old key from %s: %w", configPath, err)
					}
				}
			case dataDir == "":
				return errors.New("give --config node.yaml or --data-dir DIR: the node whose store to rekey")
			}
			if oldFile != "" || oldEnv != "" {
				if oldKey, err = store.LoadKey(oldFile, oldEnv, "--old-key-file", "--old-key-env"); err != nil {
					return err
				}
			}
			if newKey, err = store.LoadKey(newFile, newEnv, "--new-key-file", "--new-key-env"); err != nil {
				return err
			}
			switch {
			case !newKey.Encrypted() && !decrypt:
				return errors.New("no new key: give --new-key-file or --new-key-env, or --decrypt to store the data unencrypted")
			case newKey.Encrypted() && decrypt:
				return errors.New("--decrypt and a new key: give one or the other")
			}
			rep, err := node.Rekey(dataDir, oldKey, newKey, rewrite)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "store %s: %s\n", dataDir, rep.Store)
			fmt.Fprintf(out, "snapshots: %d re-encrypted, %d already under the new key\n", rep.Snapshots, rep.SnapshotsDone)
			switch {
			case decrypt:
				fmt.Fprintln(out, "the store is not encrypted now: remove store.encryption_key_file and store.encryption_key_env from the configuration")
			default:
				fmt.Fprintf(out, "start the node with the new key (%s) in store.encryption_key_file or store.encryption_key_env\n", newKey.Source)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "the node's configuration (its data_dir and, by default, its current key)")
	f.StringVar(&dataDir, "data-dir", "", "the node's data directory (instead of --config)")
	f.StringVar(&oldFile, "old-key-file", "", "file holding the key the store is encrypted with now")
	f.StringVar(&oldEnv, "old-key-env", "", "environment variable holding the key the store is encrypted with now")
	f.StringVar(&newFile, "new-key-file", "", "file holding the key to encrypt with")
	f.StringVar(&newEnv, "new-key-env", "", "environment variable holding the key to encrypt with")
	f.BoolVar(&rewrite, "rewrite", false, "rewrite all data under fresh data keys, not only the key registry")
	f.BoolVar(&decrypt, "decrypt", false, "store the data unencrypted (no new key)")
	return cmd
}
