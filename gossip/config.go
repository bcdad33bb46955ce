package gossip

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/meshward/meshward/internal/confcheck"
)

// Config is the "gossip" section of a node's configuration: how signed
// intelligence spreads. Options, built from it by the node (see
// Config.Options), adds what only the running node knows.
type Config struct {
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
	// StrangerGrace is how long a peer that is not a member may stay
	// connected to an admitted node (time to join); then its inbound
	// connections are closed and refused for StrangerBan.
	StrangerGrace time.Duration `yaml:"stranger_grace"`
	StrangerBan   time.Duration `yaml:"stranger_ban"`

	// RouterHeartbeat and ScoreDecayInterval are Options'; zero means
	// GossipSub's second. Not configurable: the testnet's sim profile
	// slows them.
	RouterHeartbeat    time.Duration `yaml:"-"`
	ScoreDecayInterval time.Duration `yaml:"-"`
	// MeshDegree is Options'; zero means GossipSub's 6. Not
	// configurable: the testnet's sim profile narrows the meshes.
	MeshDegree int `yaml:"-"`
	// GossipTargets is Options'; zero means GossipSub's. Not in the
	// configuration file.
	GossipTargets int `yaml:"-"`
	// MeshPublishOnly is Options'. Not in the configuration file.
	MeshPublishOnly bool `yaml:"-"`
	// MuxerKeepAlive and MuxerMeasureRTT are HostConfig's; zero means
	// yamux's 30 s. Not configurable: the testnet's sim profile slows
	// them.
	MuxerKeepAlive  time.Duration `yaml:"-"`
	MuxerMeasureRTT time.Duration `yaml:"-"`
}

// Defaults of the connection gater's timing.
const (
	DefaultStrangerGrace = 30 * time.Second
	DefaultStrangerBan   = 2 * time.Minute
)

// DefaultConfig returns the section's defaults.
func DefaultConfig() Config {
	return Config{
		SyncInterval:      DefaultSyncInterval,
		HeartbeatInterval: DefaultHeartbeatInterval,
		RateLimit:         float64(DefaultRateLimit),
		RateBurst:         DefaultRateBurst,
		Indicators:        true,
		MDNSService:       DefaultMDNSService,
		StrangerGrace:     DefaultStrangerGrace,
		StrangerBan:       DefaultStrangerBan,
	}
}

// Validate returns every problem of the section, joined; each is a
// *confcheck.FieldError whose Field is relative to the section
// ("rate_limit"). Unlike Options, where zero means the default, every
// value here is explicit: DefaultConfig fills them.
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.SyncInterval <= 0 {
		p.Add("sync_interval", c.SyncInterval, "must be positive")
	}
	if c.HeartbeatInterval <= 0 {
		p.Add("heartbeat_interval", c.HeartbeatInterval, "must be positive")
	}
	if !(c.RateLimit > 0) { // NaN too
		p.Add("rate_limit", c.RateLimit, "must be positive (messages per second per peer)")
	}
	if c.RateBurst < 1 {
		p.Add("rate_burst", c.RateBurst, "must be at least 1")
	}
	if c.StrangerGrace <= 0 {
		p.Add("stranger_grace", c.StrangerGrace, "must be positive (time a joining node has to be admitted)")
	}
	if c.StrangerBan <= 0 {
		p.Add("stranger_ban", c.StrangerBan, "must be positive")
	}
	return p.Err()
}

// Options returns the Options this section configures: anti-entropy's
// interval, the rate limit, the heartbeat interval, the indicator topic
// and GossipSub's timing.
// The caller adds the rest (Handler, Roster, Log, the heartbeat Key and
// Info, Registerer, Logger). Discovery (MDNS, MDNSService) is not an
// Option: the caller starts it (NewMDNS).
func (c Config) Options() Options {
	o := Options{
		SyncInterval: c.SyncInterval,
		RateLimit:    rate.Limit(c.RateLimit),
		RateBurst:    c.RateBurst,
		Heartbeats:   &HeartbeatOptions{Interval: c.HeartbeatInterval},

		RouterHeartbeat:    c.RouterHeartbeat,
		ScoreDecayInterval: c.ScoreDecayInterval,
		MeshDegree:         c.MeshDegree,
		GossipTargets:      c.GossipTargets,
		MeshPublishOnly:    c.MeshPublishOnly,
	}
	if c.Indicators {
		o.Indicators = &IndicatorOptions{}
	}
	return o
}
