package detectors

import (
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/meshward/meshward/internal/confcheck"
)

// Config is the detectors section of a node's configuration: the log
// sources and the detection rules.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Paths are the log files to follow (glob patterns allowed): auth
	// logs, web access logs, kernel firewall logs. Every rule sees every
	// line; each parser recognises its own.
	Paths []string `yaml:"paths"`
	// FromStart replays the files from their beginning instead of their end.
	FromStart bool `yaml:"from_start"`
	// PollInterval is how often the files are checked for new lines.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Inotify wakes the file sources as soon as a file changes (default
	// true); polling at PollInterval stays as the fallback. Off, the
	// files are only polled.
	Inotify bool `yaml:"inotify"`
	// RulesDir adds rules to the built-in pack, or replaces them by name.
	RulesDir string `yaml:"rules_dir"`
	// Rules selects rules by name; empty means all of them.
	Rules []string `yaml:"rules"`
	// MaxSources caps the sources each rule tracks at once; past it the
	// oldest are evicted, so a flood of spoofed sources cannot exhaust
	// memory.
	MaxSources int `yaml:"max_sources"`
	// Syslog receives RFC 3164/5424 messages. Anyone who can reach the
	// port can write lines the rules count: keep it on loopback and
	// forward to it from the local rsyslog or syslog-ng.
	Syslog SyslogConfig `yaml:"syslog"`
	// Journald follows the systemd journal through journalctl.
	Journald JournaldConfig `yaml:"journald"`
	// ResolveHosts also reports the addresses of sources logged by host
	// name (ResolveOptions). Off by default: a reverse name is chosen by
	// whoever controls the attacker's reverse zone.
	ResolveHosts ResolveConfig `yaml:"resolve_hosts"`
}

// ResolveConfig configures the resolution of host-named sources; zero
// fields take ResolveOptions' defaults.
type ResolveConfig struct {
	Enabled bool `yaml:"enabled"`
	// Timeout bounds one lookup (default 2s).
	Timeout time.Duration `yaml:"timeout"`
	// CacheSize bounds the names whose answers are kept (default 4096).
	CacheSize int `yaml:"cache_size"`
	// MaxLookups bounds the lookups a minute (default 60).
	MaxLookups int `yaml:"max_lookups_per_minute"`
}

// Options returns the engine's resolve options, or nil when resolution
// is off.
func (c ResolveConfig) Options() *ResolveOptions {
	if !c.Enabled {
		return nil
	}
	return &ResolveOptions{Timeout: c.Timeout, CacheSize: c.CacheSize, MaxLookups: c.MaxLookups}
}

func (c ResolveConfig) validate() error {
	var p confcheck.Problems
	if c.Timeout < 0 || c.Timeout > time.Minute {
		p.Add("timeout", c.Timeout, "want 0 (the default, 2s) up to 1m")
	}
	if c.CacheSize < 0 || c.CacheSize > 1<<20 {
		p.Add("cache_size", c.CacheSize, "want 0 (the default, 4096) up to 1048576")
	}
	if c.MaxLookups < 0 || c.MaxLookups > 100_000 {
		p.Add("max_lookups_per_minute", c.MaxLookups, "want 0 (the default, 60) up to 100000")
	}
	return p.Err()
}

// SyslogConfig configures the syslog listener (SyslogSource).
type SyslogConfig struct {
	Enabled bool `yaml:"enabled"`
	// UDP and TCP are host:port to listen on; empty turns that one off.
	UDP             string        `yaml:"udp"`
	TCP             string        `yaml:"tcp"`
	MaxMessageBytes int           `yaml:"max_message_bytes"`
	MaxConns        int           `yaml:"max_conns"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
}

// JournaldConfig configures the journal follower (JournaldSource).
type JournaldConfig struct {
	Enabled bool `yaml:"enabled"`
	// Matches are journalctl FIELD=VALUE filters. Filter on _SYSTEMD_UNIT,
	// which journald sets itself, not on SYSLOG_IDENTIFIER, which any
	// local user can forge with logger -t.
	Matches []string `yaml:"matches"`
}

// minSyslogMessageBytes is the message size every syslog receiver must
// accept (RFC 5424 section 6.1).
const minSyslogMessageBytes = 480

// DefaultConfig is the detectors section a node starts from: the system
// auth log followed, syslog and journald off.
func DefaultConfig() Config {
	return Config{
		Enabled:      true,
		Paths:        []string{"/var/log/auth.log"},
		PollInterval: DefaultPollInterval,
		Inotify:      true,
		MaxSources:   DefaultMaxSources,
		Syslog: SyslogConfig{
			UDP:             DefaultSyslogAddr,
			TCP:             DefaultSyslogAddr,
			MaxMessageBytes: DefaultSyslogMaxMessageBytes,
			MaxConns:        DefaultSyslogMaxConns,
			IdleTimeout:     DefaultSyslogIdleTimeout,
		},
		Journald: JournaldConfig{Matches: []string{"_SYSTEMD_UNIT=ssh.service"}},
	}
}

// Validate checks the section when it is enabled and returns every
// problem, joined, each a *confcheck.FieldError whose Field is the YAML
// path inside the section ("syslog.udp", "paths[0]").
func (c Config) Validate() error {
	var p confcheck.Problems
	if !c.Enabled {
		return nil
	}
	if len(c.Paths) == 0 && !c.Syslog.Enabled && !c.Journald.Enabled {
		p.Add("paths", "[]", "needs at least one log file, or detectors.syslog or detectors.journald enabled")
	}
	if c.Syslog.Enabled {
		p.Join("syslog", c.Syslog.validate())
	}
	if c.Journald.Enabled {
		p.Join("journald", c.Journald.validate())
	}
	if c.ResolveHosts.Enabled {
		p.Join("resolve_hosts", c.ResolveHosts.validate())
	}
	for i, path := range c.Paths {
		if _, err := filepath.Match(path, ""); err != nil || path == "" {
			p.Add(fmt.Sprintf("paths[%d]", i), path, "want a file path or glob pattern")
		}
	}
	if c.PollInterval <= 0 {
		p.Add("poll_interval", c.PollInterval, "must be positive")
	}
	if c.MaxSources < 1 {
		p.Add("max_sources", c.MaxSources, "must be at least 1")
	}
	return p.Err()
}

func (c SyslogConfig) validate() error {
	var p confcheck.Problems
	if c.UDP == "" && c.TCP == "" {
		p.Add("udp", `""`, "set detectors.syslog.udp or detectors.syslog.tcp when syslog is enabled")
	}
	for _, f := range []struct{ field, addr string }{{"udp", c.UDP}, {"tcp", c.TCP}} {
		if _, _, err := net.SplitHostPort(f.addr); f.addr != "" && err != nil {
			p.Add(f.field, f.addr, "want host:port")
		}
	}
	if c.MaxMessageBytes < minSyslogMessageBytes {
		p.Add("max_message_bytes", c.MaxMessageBytes, "must be at least 480 (RFC 5424's minimum)")
	}
	if c.MaxConns < 1 {
		p.Add("max_conns", c.MaxConns, "must be at least 1")
	}
	if c.IdleTimeout <= 0 {
		p.Add("idle_timeout", c.IdleTimeout, "must be positive")
	}
	return p.Err()
}

func (c JournaldConfig) validate() error {
	var p confcheck.Problems
	for i, m := range c.Matches {
		if !validMatch(m) {
			p.Add(fmt.Sprintf("matches[%d]", i), m, "want FIELD=VALUE or +")
		}
	}
	return p.Err()
}
