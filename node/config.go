package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/multiformats/go-multiaddr"
	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/alert"
	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/gossip"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/feeds"
	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/responders"
	"github.com/meshward/meshward/responders/events"
	"github.com/meshward/meshward/store"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Config is one node's configuration: one YAML file, every field with a
// default (DefaultConfig), checked by Validate with errors that name the
// field.
type Config struct {
	// DataDir holds the node key, the Badger store and Raft snapshots.
	DataDir string `yaml:"data_dir"`
	// Site is a human name for where the node runs, shown to operators
	// and carried in sightings.
	Site string `yaml:"site"`
	// Listen are the libp2p listen multiaddrs (TCP and QUIC).
	Listen []string `yaml:"listen"`
	// Peers are gossip bootstrap peers: multiaddrs ending in /p2p/<id>.
	Peers []string `yaml:"peers"`
	// Protected are ranges no block may ever cover (resolvers, the
	// mesh's own networks).
	Protected []string `yaml:"protected"`

	Gossip        gossip.Config       `yaml:"gossip"`
	Consensus     consensus.Config    `yaml:"consensus"`
	Corroboration CorroborationConfig `yaml:"corroboration"`
	LocalBlock    LocalBlockConfig    `yaml:"local_block"`
	Detectors     detectors.Config    `yaml:"detectors"`
	Responders    responders.Config   `yaml:"responders"`
	Events        events.Config       `yaml:"events"`
	Store         store.Config        `yaml:"store"`
	Admin         admin.Config        `yaml:"admin"`
	Intel         IntelConfig         `yaml:"intel"`
	Alerts        alert.Config        `yaml:"alerts"`
	// Process is the process measurement: the playbook's expectations.
	Process process.Config `yaml:"process"`
	// MetricsListen is a host:port serving Prometheus /metrics over plain
	// HTTP; empty means off. Keep it on loopback or a management network.
	MetricsListen string `yaml:"metrics_listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
}

// CorroborationConfig is the rule that turns sightings into a mesh-wide
// block proposal: at least MinNodes distinct roster nodes sighting the same
// indicator within Window.
type CorroborationConfig struct {
	MinNodes int           `yaml:"min_nodes"`
	Window   time.Duration `yaml:"window"`
	// BlockTTL is how long a corroborated mesh-wide block lasts.
	BlockTTL time.Duration `yaml:"block_ttl"`
	// RecidiveDoublings: a source the mesh blocked automatically before
	// is blocked for BlockTTL doubled once per earlier block, at most this
	// many times (0: off). Part of the rules a mesh is founded with.
	RecidiveDoublings int `yaml:"recidive_doublings"`
	// Distributed is the rule over sub-threshold summaries (distributed.go).
	Distributed DistributedConfig `yaml:"distributed"`
}

// LocalBlockConfig is the first tier: block at once on this node's own
// evidence, bounded in time.
type LocalBlockConfig struct {
	Enabled bool          `yaml:"enabled"`
	TTL     time.Duration `yaml:"ttl"`
}

// SocketPath is the admin socket's path with the default applied.
func (c Config) SocketPath() string { return c.Admin.SocketPathIn(c.DataDir) }

// DefaultConfig returns a configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		DataDir:   "/var/lib/meshward",
		Site:      hostname(),
		Listen:    []string{"/ip4/0.0.0.0/tcp/7946", "/ip4/0.0.0.0/udp/7946/quic-v1"},
		Gossip:    gossip.DefaultConfig(),
		Consensus: consensus.DefaultConfig(),
		Corroboration: CorroborationConfig{
			MinNodes:          2,
			Window:            10 * time.Minute,
			BlockTTL:          24 * time.Hour,
			RecidiveDoublings: 3,
			Distributed:       DefaultDistributedConfig(),
		},
		LocalBlock: LocalBlockConfig{Enabled: true, TTL: time.Hour},
		Detectors:  detectors.DefaultConfig(),
		Responders: responders.DefaultConfig(),
		Events:     events.DefaultConfig(),
		Store:      store.DefaultConfig(),
		Admin:      admin.DefaultConfig(),
		Intel:      DefaultIntelConfig(),
		Alerts:     alert.DefaultConfig(),
		Process:    process.DefaultConfig(),
		LogLevel:   "info",
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "meshward"
	}
	return h
}

// LoadConfig reads a YAML file over the defaults. Unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML over the defaults and validates the result.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // an empty file means all defaults
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return Config{}, fmt.Errorf("decode: %w", err)
		}
		// Type errors leave the rest decoded: report them with every
		// other problem of the file at once.
		return Config{}, errors.Join(confcheck.TypeErrors(b, te), cfg.Validate())
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// FieldError names the configuration field that is wrong.
type FieldError = confcheck.FieldError

// Validate checks every field and returns all problems found, joined.
func (c Config) Validate() error {
	var sections confcheck.Problems
	bad := sections.Add
	if c.DataDir == "" {
		bad("data_dir", `""`, "must be a directory path")
	}
	if len(c.Listen) == 0 {
		bad("listen", "[]", "needs at least one multiaddr")
	}
	for i, a := range c.Listen {
		if _, err := multiaddr.NewMultiaddr(a); err != nil {
			bad(fmt.Sprintf("listen[%d]", i), a, "not a multiaddr: "+err.Error())
		}
	}
	checkPeers := func(field string, list []string) {
		for i, a := range list {
			if _, err := peer.AddrInfoFromString(a); err != nil {
				bad(fmt.Sprintf("%s[%d]", field, i), a, "want a multiaddr ending in /p2p/<peer id>: "+err.Error())
			}
		}
	}
	checkPeers("peers", c.Peers)
	for i, p := range c.Protected {
		if _, err := intel.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("protected[%d]", i), p, "want an IP address or CIDR")
		}
	}
	sections.Join("gossip", c.Gossip.Validate())
	sections.Join("consensus", c.Consensus.Validate())
	sections.Join("store", c.Store.Validate())
	if c.Corroboration.MinNodes < 1 {
		bad("corroboration.min_nodes", c.Corroboration.MinNodes, "must be at least 1")
	}
	if c.Corroboration.Window <= 0 {
		bad("corroboration.window", c.Corroboration.Window, "must be positive")
	}
	if c.Corroboration.BlockTTL <= 0 {
		bad("corroboration.block_ttl", c.Corroboration.BlockTTL, "must be positive")
	}
	if d := c.Corroboration.RecidiveDoublings; d < 0 || d > 8 {
		bad("corroboration.recidive_doublings", d, "must be 0 (off) to 8")
	}
	c.Corroboration.Distributed.validate("corroboration.distributed", c.Corroboration.MinNodes, bad)
	if c.LocalBlock.Enabled && c.LocalBlock.TTL <= 0 {
		bad("local_block.ttl", c.LocalBlock.TTL, "must be positive when local_block.enabled")
	}
	sections.Join("detectors", c.Detectors.Validate())
	sections.Join("responders", c.Responders.Validate())
	sections.Join("events", c.Events.Validate())
	sections.Join("admin", c.Admin.Validate())
	sections.Join("intel", c.Intel.Validate())
	sections.Join("intel.feeds", feeds.ValidateList(c.Intel.Feeds))
	sections.Join("alerts", c.Alerts.Validate(alertSinks(c.Events)))
	sections.Join("process", c.Process.Validate())
	if c.Store.Retention < c.Corroboration.Window {
		bad("store.retention", c.Store.Retention, fmt.Sprintf("must cover corroboration.window (%s)", c.Corroboration.Window))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen", c.MetricsListen, "want host:port")
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", c.LogLevel, "allowed values: debug, info, warn, error")
	}
	return sections.Err()
}

// ProtectedPrefixes returns the configured protected ranges, parsed.
func (c Config) ProtectedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.Protected {
		if p, err := intel.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
