package responders

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
)

// Config is the "responders" section of a node's configuration: the
// enforcement backends. Every enabled backend receives the same desired
// state; each takes the indicator types it can enforce (nftables:
// addresses and networks; dns: domains).
type Config struct {
	// Resync is the period of the level-triggered reconcile pass.
	Resync time.Duration `yaml:"resync"`
	// DryRun records what would be blocked, and nothing else. It is the
	// default, so that a node never touches the firewall unasked.
	DryRun   bool           `yaml:"dry_run"`
	Nftables NftablesConfig `yaml:"nftables"`
	DNS      DNSConfig      `yaml:"dns"`
	Exec     []ExecConfig   `yaml:"exec"`
}

// NftablesConfig enforces address and network blocks in the kernel, in a
// table of Meshward's own (inet <table>); needs CAP_NET_ADMIN.
type NftablesConfig struct {
	Enabled bool   `yaml:"enabled"`
	Table   string `yaml:"table"`
}

// DNSConfig sinkholes domain blocks through an Unbound include file and an
// RPZ zone.
type DNSConfig struct {
	Enabled       bool          `yaml:"enabled"`
	UnboundPath   string        `yaml:"unbound_path"`
	RPZPath       string        `yaml:"rpz_path"`
	RPZOrigin     string        `yaml:"rpz_origin"`
	Reload        []string      `yaml:"reload"` // argv, e.g. [unbound-control, reload]
	ReloadTimeout time.Duration `yaml:"reload_timeout"`
}

// ExecConfig runs a command for every block added and removed.
type ExecConfig struct {
	Name      string                `yaml:"name"`
	Add       []string              `yaml:"add"`    // argv; {indicator} {type} {key} {expires} are filled in
	Remove    []string              `yaml:"remove"` // argv; empty: removals only forget
	Types     []intel.IndicatorType `yaml:"types"`
	Timeout   time.Duration         `yaml:"timeout"`
	StatePath string                `yaml:"state_path"`
}

// DefaultExecName is the name of an exec backend whose Name is empty.
const DefaultExecName = "exec"

// maxTableName is the longest nftables table name the kernel accepts.
const maxTableName = 255

// DefaultConfig returns the section's defaults: dry run only.
func DefaultConfig() Config {
	return Config{
		Resync:   DefaultInterval,
		DryRun:   true,
		Nftables: NftablesConfig{Table: "meshward"},
		DNS:      DNSConfig{RPZOrigin: "rpz.meshward.", ReloadTimeout: 30 * time.Second},
	}
}

// Validate checks the section and returns every problem, joined, each a
// *confcheck.FieldError whose Field is relative to the section
// ("nftables.table", "exec[0].add").
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.Resync <= 0 {
		p.Add("resync", c.Resync, "must be positive")
	}
	if !c.DryRun && !c.Nftables.Enabled && !c.DNS.Enabled && len(c.Exec) == 0 {
		p.Add("dry_run", false, "no responder is enabled: enable dry_run, nftables, dns or exec")
	}
	if n := c.Nftables; n.Enabled {
		if n.Table == "" {
			p.Add("nftables.table", `""`, "required when nftables is enabled")
		} else if len(n.Table) > maxTableName {
			p.Add("nftables.table", n.Table, fmt.Sprintf("must be at most %d bytes", maxTableName))
		}
	}
	if d := c.DNS; d.Enabled {
		if d.UnboundPath == "" && d.RPZPath == "" {
			p.Add("dns.unbound_path", `""`, "set unbound_path or rpz_path when dns is enabled")
		}
		if d.ReloadTimeout <= 0 {
			p.Add("dns.reload_timeout", d.ReloadTimeout, "must be positive")
		}
	}
	names := map[string]bool{}
	for i, e := range c.Exec {
		f := fmt.Sprintf("exec[%d]", i)
		if len(e.Add) == 0 || e.Add[0] == "" {
			p.Add(f+".add", e.Add, "needs a command (argv)")
		}
		if e.Timeout < 0 {
			p.Add(f+".timeout", e.Timeout, "must not be negative")
		}
		name := e.Name
		if name == "" {
			name = DefaultExecName
		}
		if names[name] {
			p.Add(f+".name", e.Name, "must be unique among exec responders")
		}
		names[name] = true
		for j, t := range e.Types {
			if _, err := intel.NewIndicator(t, "x"); err != nil && strings.Contains(err.Error(), "unknown type") {
				p.Add(fmt.Sprintf("%s.types[%d]", f, j), t, "allowed values: ipv4, ipv6, cidr, domain, url, sha256")
			}
		}
	}
	return p.Err()
}

// Enabled returns the registered names (see Register) of the backends c
// enables, in the order Build makes them and the reconciler drives them.
func (c Config) Enabled() []string {
	var out []string
	if c.DryRun {
		out = append(out, DryRunName)
	}
	if c.Nftables.Enabled {
		out = append(out, "nftables")
	}
	if c.DNS.Enabled {
		out = append(out, "dns")
	}
	if len(c.Exec) > 0 {
		out = append(out, "exec")
	}
	return out
}
