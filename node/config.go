package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/multiformats/go-multiaddr"
	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"

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

	Gossip        GossipConfig        `yaml:"gossip"`
	Consensus     ConsensusConfig     `yaml:"consensus"`
	Corroboration CorroborationConfig `yaml:"corroboration"`
	LocalBlock    LocalBlockConfig    `yaml:"local_block"`
	Detectors     DetectorsConfig     `yaml:"detectors"`
	Responders    RespondersConfig    `yaml:"responders"`
	Events        EventsConfig        `yaml:"events"`
	Store         StoreConfig         `yaml:"store"`
	Admin         AdminConfig         `yaml:"admin"`
	// MetricsListen is a host:port serving Prometheus /metrics over plain
	// HTTP; empty means off. Keep it on loopback or a management network.
	MetricsListen string `yaml:"metrics_listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
}

// GossipConfig tunes the spreading of signed intelligence.
type GossipConfig struct {
	// SyncInterval is how often anti-entropy runs with a random peer (it
	// also runs on every new connection).
	SyncInterval time.Duration `yaml:"sync_interval"`
	// HeartbeatInterval is how often the node announces its health.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RateLimit and RateBurst bound the messages per second accepted from
	// one forwarding peer; excess is dropped, counted and lowers the
	// peer's score.
	RateLimit float64 `yaml:"rate_limit"`
	RateBurst int     `yaml:"rate_burst"`
	// Indicators carries indicator reports (IOCs from operators and
	// feeds) on their own topic; they inform, they never block.
	Indicators bool `yaml:"indicators"`
	// MDNS finds and connects to other nodes on the local network. Off by
	// default: bootstrap peers are the primary discovery.
	MDNS bool `yaml:"mdns"`
	// MDNSService is the DNS-SD service name; one per mesh on a LAN.
	MDNSService string `yaml:"mdns_service"`
}

// ConsensusConfig says how the node takes part in Raft.
type ConsensusConfig struct {
	// Bootstrap makes this node found a new mesh when it has no Raft
	// state yet. Exactly one node of a new mesh sets it.
	Bootstrap bool `yaml:"bootstrap"`
	// Join lists members (multiaddrs ending in /p2p/<id>) to ask for
	// admission when the node is not yet in the mesh.
	Join []string `yaml:"join"`
	// JoinToken is the shared secret joiners must present. Required on
	// every node that admits others or joins.
	JoinToken string `yaml:"join_token"`
	// MaxVoters bounds the Raft voter set; the rest are non-voters. Odd.
	MaxVoters int `yaml:"max_voters"`
	// DeadVoterTimeout is how long a voter may fail heartbeats before the
	// leader replaces it with a healthy non-voter.
	DeadVoterTimeout time.Duration `yaml:"dead_voter_timeout"`
	// PromoteAfter is how long a non-voter must be healthy before it may
	// be promoted.
	PromoteAfter time.Duration `yaml:"promote_after"`
	// LeaveOnShutdown makes a clean shutdown remove this node from the
	// mesh for good (it must join again with the token to come back).
	LeaveOnShutdown bool `yaml:"leave_on_shutdown"`
}

// CorroborationConfig is the rule that turns sightings into a mesh-wide
// block proposal: at least MinNodes distinct roster nodes sighting the same
// indicator within Window.
type CorroborationConfig struct {
	MinNodes int           `yaml:"min_nodes"`
	Window   time.Duration `yaml:"window"`
	// BlockTTL is how long a corroborated mesh-wide block lasts.
	BlockTTL time.Duration `yaml:"block_ttl"`
}

// LocalBlockConfig is the first tier: block at once on this node's own
// evidence, bounded in time.
type LocalBlockConfig struct {
	Enabled bool          `yaml:"enabled"`
	TTL     time.Duration `yaml:"ttl"`
}

// DetectorsConfig configures the log sources and the detection rules.
type DetectorsConfig struct {
	Enabled bool `yaml:"enabled"`
	// Paths are the log files to follow (glob patterns allowed): auth
	// logs, web access logs, kernel firewall logs. Every rule sees every
	// line; each parser recognises its own.
	Paths []string `yaml:"paths"`
	// FromStart replays the files from their beginning instead of their end.
	FromStart bool `yaml:"from_start"`
	// PollInterval is how often the files are checked for new lines.
	PollInterval time.Duration `yaml:"poll_interval"`
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
}

// SyslogConfig configures the syslog listener.
type SyslogConfig struct {
	Enabled bool `yaml:"enabled"`
	// UDP and TCP are host:port to listen on; empty turns that one off.
	UDP             string        `yaml:"udp"`
	TCP             string        `yaml:"tcp"`
	MaxMessageBytes int           `yaml:"max_message_bytes"`
	MaxConns        int           `yaml:"max_conns"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
}

// JournaldConfig configures the journal follower.
type JournaldConfig struct {
	Enabled bool `yaml:"enabled"`
	// Matches are journalctl FIELD=VALUE filters. Filter on _SYSTEMD_UNIT,
	// which journald sets itself, not on SYSLOG_IDENTIFIER, which any
	// local user can forge with logger -t.
	Matches []string `yaml:"matches"`
}

// RespondersConfig chooses the enforcement backends. Every enabled backend
// receives the same desired state; each takes the indicator types it can
// enforce (nftables: addresses and networks; dns: domains).
type RespondersConfig struct {
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

// EventsConfig sends detections, sightings and policy steps to a SIEM and
// to SOAR webhooks.
type EventsConfig struct {
	// Syslog destinations receive CEF records in RFC 5424 messages.
	Syslog []SyslogSinkConfig `yaml:"syslog"`
	// JSONLines is a file receiving one JSON object per event.
	JSONLines string `yaml:"json_lines"`
	// QueueSize bounds the events waiting for delivery; past it they are
	// dropped and counted.
	QueueSize int           `yaml:"queue_size"`
	Webhook   WebhookConfig `yaml:"webhook"`
}

// SyslogSinkConfig is one SIEM syslog destination.
type SyslogSinkConfig struct {
	Network  string `yaml:"network"` // udp or tcp
	Address  string `yaml:"address"` // host:port
	Facility int    `yaml:"facility"`
}

// WebhookConfig posts every event, signed with HMAC-SHA256, through a
// queue kept in the store so nothing is lost while the receiver is down.
type WebhookConfig struct {
	URL string `yaml:"url"`
	// SecretFile holds the HMAC key (at least 16 bytes).
	SecretFile string        `yaml:"secret_file"`
	Timeout    time.Duration `yaml:"timeout"`
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// AdminConfig configures the admin API the CLI and dashboard talk to.
type AdminConfig struct {
	// Socket is the Unix socket (mode 0600); empty means admin.sock in
	// data_dir. The local admin token is written beside it (admin.token).
	Socket string `yaml:"socket"`
	// Listen is an optional host:port for HTTPS; it needs TLSCert and TLSKey.
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// AuditRetention is how long audit entries are kept.
	AuditRetention time.Duration `yaml:"audit_retention"`
}

// SocketPath is the admin socket's path with the default applied.
func (c Config) SocketPath() string {
	if c.Admin.Socket != "" {
		return c.Admin.Socket
	}
	return filepath.Join(c.DataDir, "admin.sock")
}

// StoreConfig bounds what the node keeps on disk.
type StoreConfig struct {
	// Retention is how long received envelopes (sightings) are kept.
	// It must cover the corroboration window, and it bounds how far back
	// a node that was away can catch up.
	Retention time.Duration `yaml:"retention"`
}

// DefaultConfig returns a configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		DataDir:   "/var/lib/meshward",
		Site:      hostname(),
		Listen:    []string{"/ip4/0.0.0.0/tcp/7946", "/ip4/0.0.0.0/udp/7946/quic-v1"},
		Gossip:    GossipConfig{SyncInterval: 30 * time.Second, HeartbeatInterval: 10 * time.Second, RateLimit: 200, RateBurst: 2000, Indicators: true, MDNSService: "_meshward._udp"},
		Consensus: ConsensusConfig{MaxVoters: 5, DeadVoterTimeout: 30 * time.Second, PromoteAfter: 2 * time.Second},
		Corroboration: CorroborationConfig{
			MinNodes: 2,
			Window:   10 * time.Minute,
			BlockTTL: 24 * time.Hour,
		},
		LocalBlock: LocalBlockConfig{Enabled: true, TTL: time.Hour},
		Detectors: DetectorsConfig{
			Enabled:      true,
			Paths:        []string{"/var/log/auth.log"},
			PollInterval: 250 * time.Millisecond,
			MaxSources:   100000,
			Syslog: SyslogConfig{UDP: "127.0.0.1:5514", TCP: "127.0.0.1:5514", MaxMessageBytes: 8192,
				MaxConns: 256, IdleTimeout: 5 * time.Minute},
			Journald: JournaldConfig{Matches: []string{"_SYSTEMD_UNIT=ssh.service"}},
		},
		Responders: RespondersConfig{
			Resync:   30 * time.Second,
			DryRun:   true,
			Nftables: NftablesConfig{Table: "meshward"},
			DNS:      DNSConfig{RPZOrigin: "rpz.meshward.", ReloadTimeout: 30 * time.Second},
		},
		Events: EventsConfig{QueueSize: 4096, Webhook: WebhookConfig{
			Timeout: 10 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: time.Minute}},
		Store:    StoreConfig{Retention: 7 * 24 * time.Hour},
		Admin:    AdminConfig{AuditRetention: 90 * 24 * time.Hour},
		LogLevel: "info",
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
	var errs []error
	bad := func(field string, v any, msg string) {
		errs = append(errs, &FieldError{Field: field, Value: v, Msg: msg})
	}
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
	checkPeers("consensus.join", c.Consensus.Join)
	for i, p := range c.Protected {
		if _, err := intel.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("protected[%d]", i), p, "want an IP address or CIDR")
		}
	}
	if c.Gossip.SyncInterval <= 0 {
		bad("gossip.sync_interval", c.Gossip.SyncInterval, "must be positive")
	}
	if c.Gossip.HeartbeatInterval <= 0 {
		bad("gossip.heartbeat_interval", c.Gossip.HeartbeatInterval, "must be positive")
	}
	if c.Gossip.RateLimit <= 0 {
		bad("gossip.rate_limit", c.Gossip.RateLimit, "must be positive (messages per second per peer)")
	}
	if c.Gossip.RateBurst < 1 {
		bad("gossip.rate_burst", c.Gossip.RateBurst, "must be at least 1")
	}
	if c.Consensus.Bootstrap && len(c.Consensus.Join) > 0 {
		bad("consensus.join", c.Consensus.Join, "a bootstrapping node founds a mesh and joins none; set one of consensus.bootstrap and consensus.join")
	}
	if len(c.Consensus.Join) > 0 && c.Consensus.JoinToken == "" {
		bad("consensus.join_token", `""`, "required to join a mesh")
	}
	if c.Consensus.MaxVoters < 1 || c.Consensus.MaxVoters%2 == 0 {
		bad("consensus.max_voters", c.Consensus.MaxVoters, "must be odd and at least 1")
	}
	if c.Consensus.DeadVoterTimeout <= 0 {
		bad("consensus.dead_voter_timeout", c.Consensus.DeadVoterTimeout, "must be positive")
	}
	if c.Consensus.PromoteAfter <= 0 {
		bad("consensus.promote_after", c.Consensus.PromoteAfter, "must be positive")
	}
	if c.Corroboration.MinNodes < 1 {
		bad("corroboration.min_nodes", c.Corroboration.MinNodes, "must be at least 1")
	}
	if c.Corroboration.Window <= 0 {
		bad("corroboration.window", c.Corroboration.Window, "must be positive")
	}
	if c.Corroboration.BlockTTL <= 0 {
		bad("corroboration.block_ttl", c.Corroboration.BlockTTL, "must be positive")
	}
	if c.LocalBlock.Enabled && c.LocalBlock.TTL <= 0 {
		bad("local_block.ttl", c.LocalBlock.TTL, "must be positive when local_block.enabled")
	}
	if d := c.Detectors; d.Enabled {
		if len(d.Paths) == 0 && !d.Syslog.Enabled && !d.Journald.Enabled {
			bad("detectors.paths", "[]", "needs at least one log file, or detectors.syslog or detectors.journald enabled")
		}
		if sl := d.Syslog; sl.Enabled {
			if sl.UDP == "" && sl.TCP == "" {
				bad("detectors.syslog.udp", `""`, "set detectors.syslog.udp or detectors.syslog.tcp when syslog is enabled")
			}
			for field, a := range map[string]string{"detectors.syslog.udp": sl.UDP, "detectors.syslog.tcp": sl.TCP} {
				if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
					bad(field, a, "want host:port")
				}
			}
			if sl.MaxMessageBytes < 480 {
				bad("detectors.syslog.max_message_bytes", sl.MaxMessageBytes, "must be at least 480 (RFC 5424's minimum)")
			}
			if sl.MaxConns < 1 {
				bad("detectors.syslog.max_conns", sl.MaxConns, "must be at least 1")
			}
			if sl.IdleTimeout <= 0 {
				bad("detectors.syslog.idle_timeout", sl.IdleTimeout, "must be positive")
			}
		}
		for i, p := range d.Paths {
			if _, err := filepath.Match(p, ""); err != nil || p == "" {
				bad(fmt.Sprintf("detectors.paths[%d]", i), p, "want a file path or glob pattern")
			}
		}
		if d.PollInterval <= 0 {
			bad("detectors.poll_interval", d.PollInterval, "must be positive")
		}
		if d.MaxSources < 1 {
			bad("detectors.max_sources", d.MaxSources, "must be at least 1")
		}
	}
	c.validateResponders(bad)
	if c.Store.Retention < c.Corroboration.Window {
		bad("store.retention", c.Store.Retention, fmt.Sprintf("must cover corroboration.window (%s)", c.Corroboration.Window))
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", c.Admin.Listen, "want host:port")
		}
		if c.Admin.TLSCert == "" || c.Admin.TLSKey == "" {
			bad("admin.tls_cert", c.Admin.TLSCert, "admin.listen serves HTTPS only: set admin.tls_cert and admin.tls_key")
		}
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen", c.MetricsListen, "want host:port")
		}
	}
	if c.Admin.AuditRetention <= 0 {
		bad("admin.audit_retention", c.Admin.AuditRetention, "must be positive")
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", c.LogLevel, "allowed values: debug, info, warn, error")
	}
	return errors.Join(errs...)
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

func (c Config) validateResponders(bad func(field string, v any, msg string)) {
	r := c.Responders
	if r.Resync <= 0 {
		bad("responders.resync", r.Resync, "must be positive")
	}
	if !r.DryRun && !r.Nftables.Enabled && !r.DNS.Enabled && len(r.Exec) == 0 {
		bad("responders.dry_run", false, "no responder is enabled: enable dry_run, nftables, dns or exec")
	}
	if r.Nftables.Enabled && r.Nftables.Table == "" {
		bad("responders.nftables.table", `""`, "required when nftables is enabled")
	}
	if d := r.DNS; d.Enabled {
		if d.UnboundPath == "" && d.RPZPath == "" {
			bad("responders.dns.unbound_path", `""`, "set unbound_path or rpz_path when dns is enabled")
		}
		if d.ReloadTimeout <= 0 {
			bad("responders.dns.reload_timeout", d.ReloadTimeout, "must be positive")
		}
	}
	names := map[string]bool{}
	for i, e := range r.Exec {
		f := fmt.Sprintf("responders.exec[%d]", i)
		if len(e.Add) == 0 {
			bad(f+".add", "[]", "needs a command (argv)")
		}
		if e.Timeout < 0 {
			bad(f+".timeout", e.Timeout, "must not be negative")
		}
		if names[e.Name] {
			bad(f+".name", e.Name, "must be unique among exec responders")
		}
		names[e.Name] = true
		for j, t := range e.Types {
			if _, err := intel.NewIndicator(t, "x"); err != nil && strings.Contains(err.Error(), "unknown type") {
				bad(fmt.Sprintf("%s.types[%d]", f, j), t, "allowed values: ipv4, ipv6, cidr, domain, url, sha256")
			}
		}
	}
	ev := c.Events
	for i, s := range ev.Syslog {
		f := fmt.Sprintf("events.syslog[%d]", i)
		if s.Network != "udp" && s.Network != "tcp" {
			bad(f+".network", s.Network, "allowed values: udp, tcp")
		}
		if _, _, err := net.SplitHostPort(s.Address); err != nil {
			bad(f+".address", s.Address, "want host:port")
		}
		if s.Facility < 0 || s.Facility > 23 {
			bad(f+".facility", s.Facility, "must be 0..23")
		}
	}
	if ev.QueueSize < 1 {
		bad("events.queue_size", ev.QueueSize, "must be at least 1")
	}
	if w := ev.Webhook; w.URL != "" {
		if _, err := intel.NewIndicator(intel.URL, w.URL); err != nil {
			bad("events.webhook.url", w.URL, "want an absolute http or https URL")
		}
		if w.SecretFile == "" {
			bad("events.webhook.secret_file", `""`, "required with events.webhook.url: receivers verify the HMAC signature")
		}
		if w.Timeout <= 0 || w.MinBackoff <= 0 || w.MaxBackoff < w.MinBackoff {
			bad("events.webhook.timeout", w.Timeout, "timeout and min_backoff must be positive, max_backoff at least min_backoff")
		}
	}
}
