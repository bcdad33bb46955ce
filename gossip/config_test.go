package gossip

import (
	"math"
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/internal/confcheck"
)

func TestConfigDefaultsValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

// TestConfigValidateNamesEveryField: every bad field is reported, at once,
// by its path relative to the section.
func TestConfigValidateNamesEveryField(t *testing.T) {
	c := Config{SyncInterval: -time.Second, RateLimit: math.NaN()}
	var got []string
	for _, fe := range confcheck.Fields(c.Validate()) {
		got = append(got, fe.Field)
	}
	want := []string{"sync_interval", "heartbeat_interval", "rate_limit", "rate_burst", "stranger_grace", "stranger_ban"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
}

// TestConfigYAML: the section decodes under its keys, and keys
// left out keep their defaults.
func TestConfigYAML(t *testing.T) {
	src := "sync_interval: 1m\nheartbeat_interval: 5s\nrate_limit: 50\nrate_burst: 10\nindicators: false\nmdns: true\nmdns_service: _lab._udp\nstranger_grace: 1m\nstranger_ban: 1h\n"
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	want := Config{SyncInterval: time.Minute, HeartbeatInterval: 5 * time.Second, RateLimit: 50, RateBurst: 10, MDNS: true, MDNSService: "_lab._udp", StrangerGrace: time.Minute, StrangerBan: time.Hour}
	if c != want {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
	c = DefaultConfig()
	if err := yaml.Unmarshal([]byte("rate_burst: 7\n"), &c); err != nil || c.RateLimit != float64(DefaultRateLimit) || c.RateBurst != 7 {
		t.Fatalf("partial section: %+v, %v", c, err)
	}
}

func TestConfigOptions(t *testing.T) {
	c := DefaultConfig()
	o := c.Options()
	if o.SyncInterval != c.SyncInterval || o.RateLimit != rate.Limit(c.RateLimit) || o.RateBurst != c.RateBurst ||
		o.Heartbeats == nil || o.Heartbeats.Interval != c.HeartbeatInterval || o.Indicators == nil {
		t.Fatalf("Options() = %+v from %+v", o, c)
	}
	if o.RouterHeartbeat != 0 || o.ScoreDecayInterval != 0 {
		t.Fatalf("default GossipSub timing %s, %s: want GossipSub's (zero)", o.RouterHeartbeat, o.ScoreDecayInterval)
	}
	c.Indicators = false
	if c.Options().Indicators != nil {
		t.Fatal("indicator topic on although the section turns it off")
	}
	c.RouterHeartbeat, c.ScoreDecayInterval = 4*time.Second, 5*time.Second
	if o := c.Options(); o.RouterHeartbeat != c.RouterHeartbeat || o.ScoreDecayInterval != c.ScoreDecayInterval {
		t.Fatalf("GossipSub timing %s, %s, want %s, %s", o.RouterHeartbeat, o.ScoreDecayInterval, c.RouterHeartbeat, c.ScoreDecayInterval)
	}
}
