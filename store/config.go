package store

import (
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
}

// DefaultRetention is Config.Retention's default.
const DefaultRetention = 7 * 24 * time.Hour

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config {
	return Config{Retention: DefaultRetention}
}

// Validate returns every problem of the section, joined; each is a
// *confcheck.FieldError naming the field relative to the section.
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.Retention <= 0 {
		p.Add("retention", c.Retention, "must be positive")
	}
	return p.Err()
}
