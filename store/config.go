package store

import (
	"regexp"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

// Config is the node's YAML section "store": what the node keeps on disk.
type Config struct {
	// Retention is how long received envelopes (sightings) are kept.
	// It must cover the corroboration window (the node checks that
	// against its corroboration section), and it bounds how far back a
	// node that was away can catch up.
	Retention time.Duration `yaml:"retention"`

	// EncryptionKeyFile is a file holding the store's AES-256 key (see
	// LoadKey for its forms); it must not be readable by group or others.
	// With a key the store (and the Raft log and stable store in it) is
	// encrypted by Badger and Raft snapshots by EncryptedSnapshotStore.
	// Empty, with EncryptionKeyEnv empty too, means no encryption.
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// EncryptionKeyEnv names an environment variable holding the key as
	// text (64 hex digits or base64). When both sources are configured,
	// the variable wins when it is set and the file is used otherwise.
	EncryptionKeyEnv string `yaml:"encryption_key_env"`
	// EncryptionKeyRotation is how often Badger makes a new data key
	// (the key tables are written with; each is kept encrypted under the
	// configured key). It matters only with a key.
	EncryptionKeyRotation time.Duration `yaml:"encryption_key_rotation"`
}

// Defaults of Config.
const (
	// DefaultRetention is Config.Retention's default.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultKeyRotation is Config.EncryptionKeyRotation's default
	// (Badger's own).
	DefaultKeyRotation = 10 * 24 * time.Hour
)

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config {
	return Config{Retention: DefaultRetention, EncryptionKeyRotation: DefaultKeyRotation}
}

// Encrypted reports whether the section configures an encryption key.
func (c Config) Encrypted() bool { return c.EncryptionKeyFile != "" || c.EncryptionKeyEnv != "" }

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate returns every problem of the section, joined; each is a
// *confcheck.FieldError naming the field relative to the section. It
// reads no file and no environment: LoadKey does, at start.
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.Retention <= 0 {
		p.Add("retention", c.Retention, "must be positive")
	}
	if c.EncryptionKeyEnv != "" && !envName.MatchString(c.EncryptionKeyEnv) {
		p.Add("encryption_key_env", c.EncryptionKeyEnv, "must be an environment variable name (letters, digits, underscores; not starting with a digit), e.g. MESHWARD_STORE_KEY")
	}
	if c.Encrypted() && c.EncryptionKeyRotation <= 0 {
		p.Add("encryption_key_rotation", c.EncryptionKeyRotation, "must be positive when a key is configured")
	}
	return p.Err()
}
