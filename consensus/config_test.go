package consensus

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/internal/confcheck"
)

const validJoin = "/ip4/127.0.0.1/tcp/7946/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
		msg   string
	}{
		{"bad join address", func(c *Config) { c.Join, c.JoinToken = []string{validJoin, "/ip4/1.2.3.4/tcp/1"}, testJoinSecret }, "join[1]", "want a multiaddr ending in /p2p/<peer id>"},
		{"bootstrap and join", func(c *Config) {
			c.Bootstrap, c.Join, c.JoinToken, c.BootstrapOperators = true, []string{validJoin}, testJoinSecret, []string{bootstrapOperatorText(testOperatorKey)}
		}, "join", "a bootstrapping node founds a mesh and joins none"},
		{"bootstrap without operators", func(c *Config) { c.Bootstrap = true }, "bootstrap_operators", "a node that founds a mesh needs at least one operator public key: make one with `meshward operator keygen`"},
		{"bad bootstrap operator", func(c *Config) {
			c.Bootstrap, c.BootstrapOperators = true, []string{bootstrapOperatorText(testOperatorKey), "ssh-ed25519 AAAA"}
		}, "bootstrap_operators[1]", "operator command malformed"},
		{"join without token", func(c *Config) { c.Join = []string{validJoin} }, "join_token", "required to join a mesh"},
		{"short join token", func(c *Config) { c.Join, c.JoinToken = []string{validJoin}, "mwjoin_short" }, "join_token",
			"is 12 bytes, at least 32 are required: use the secret printed by `meshward token create --join`"},
		{"zero voters", func(c *Config) { c.MaxVoters = 0 }, "max_voters", "must be odd and at least 1"},
		{"negative voters", func(c *Config) { c.MaxVoters = -3 }, "max_voters", "must be odd and at least 1"},
		{"even voters", func(c *Config) { c.MaxVoters = 4 }, "max_voters", "must be odd and at least 1"},
		{"too many standbys", func(c *Config) { c.Standbys = 65 }, "standbys", "must be between 1 and 64, or -1 for none"},
		{"negative standbys", func(c *Config) { c.Standbys = -2 }, "standbys", "must be between 1 and 64, or -1 for none"},
		{"zero dead voter timeout", func(c *Config) { c.DeadVoterTimeout = 0 }, "dead_voter_timeout", "must be positive"},
		{"negative promote after", func(c *Config) { c.PromoteAfter = -time.Second }, "promote_after", "must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			fields := confcheck.Fields(c.Validate())
			if len(fields) != 1 || fields[0].Field != tc.field || !strings.HasPrefix(fields[0].Msg, tc.msg) {
				t.Fatalf("got %+v, want one problem in %s: %s", fields, tc.field, tc.msg)
			}
		})
	}
	for _, ok := range []int{1, 3, 5, 7} {
		c := DefaultConfig()
		c.MaxVoters = ok
		if err := c.Validate(); err != nil {
			t.Errorf("max_voters %d: %v", ok, err)
		}
	}
	all := Config{Bootstrap: true, Join: []string{"x"}, MaxVoters: 2}
	if n := len(confcheck.Fields(all.Validate())); n != 7 {
		t.Errorf("Validate reported %d problems of 7: %v", n, all.Validate())
	}
}

// TestConfigYAML decodes the section strictly: its keys fill the fields,
// and the fields set at run time cannot be written.
func TestConfigYAML(t *testing.T) {
	decode := func(src string) (Config, error) {
		c := DefaultConfig()
		dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
		dec.KnownFields(true)
		return c, dec.Decode(&c)
	}
	c, err := decode("bootstrap: true\njoin_token: t\nmax_voters: 3\ndead_voter_timeout: 1m\npromote_after: 5s\nleave_on_shutdown: true\nstandbys: 4\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Standbys != 4 || DefaultConfig().Standbys != DefaultStandbys || DefaultStandbys != 2 {
		t.Fatalf("standbys %d, default %d", c.Standbys, DefaultConfig().Standbys)
	}
	want := Config{Bootstrap: true, JoinToken: "t", MaxVoters: 3, DeadVoterTimeout: time.Minute, PromoteAfter: 5 * time.Second, LeaveOnShutdown: true}
	if c.Bootstrap != want.Bootstrap || c.JoinToken != want.JoinToken || c.MaxVoters != want.MaxVoters ||
		c.DeadVoterTimeout != want.DeadVoterTimeout || c.PromoteAfter != want.PromoteAfter || c.LeaveOnShutdown != want.LeaveOnShutdown {
		t.Fatalf("decoded %+v", c)
	}
	if c, err := decode("join: [" + validJoin + "]\n"); err != nil || len(c.Join) != 1 {
		t.Fatalf("join: %+v, %v", c.Join, err)
	}
	for _, key := range []string{"local_id", "site", "logger", "heartbeat_timeout", "membership_interval", "edge_sync_interval", "chain_recent_entries", "LocalID"} {
		if _, err := decode(key + ": x\n"); err == nil {
			t.Errorf("run-time field %s accepted in YAML", key)
		}
	}
}

// TestNewChecksConfig: New applies the same rules, after filling zero
// fields with defaults, and checks the run-time fields too.
func TestNewChecksConfig(t *testing.T) {
	h := newTestHost(t, newKey(t), nil)
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"even voters", Config{LocalID: h.ID().String(), MaxVoters: 4}, "max_voters"},
		{"no local id", Config{}, "LocalID"},
		{"lease above heartbeat", Config{LocalID: h.ID().String(), HeartbeatTimeout: time.Second, LeaderLeaseTimeout: 2 * time.Second}, "LeaderLeaseTimeout"},
		{"another host's id", Config{LocalID: newTestHost(t, newKey(t), nil).ID().String()}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(context.Background(), h, store, store, snaps, tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// TestRaftConfig: raft batches concurrent proposals and keeps the log of
// many small entries; the snapshot and retention fields override it.
func TestRaftConfig(t *testing.T) {
	rc, err := raftConfig(Config{LocalID: "node"}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if !rc.BatchApplyCh || rc.MaxAppendEntries != maxAppendEntries {
		t.Errorf("BatchApplyCh %v, MaxAppendEntries %d; want true, %d", rc.BatchApplyCh, rc.MaxAppendEntries, maxAppendEntries)
	}
	if rc.SnapshotThreshold != DefaultSnapshotThreshold || rc.TrailingLogs != DefaultTrailingLogs {
		t.Errorf("SnapshotThreshold %d, TrailingLogs %d; want %d, %d", rc.SnapshotThreshold, rc.TrailingLogs, DefaultSnapshotThreshold, DefaultTrailingLogs)
	}
	if rc.CommitTimeout != DefaultCommitTimeout || rc.HeartbeatTimeout != DefaultHeartbeatTimeout {
		t.Errorf("CommitTimeout %s, HeartbeatTimeout %s; want the defaults", rc.CommitTimeout, rc.HeartbeatTimeout)
	}
	rc, err = raftConfig(Config{LocalID: "node", SnapshotThreshold: 4, TrailingLogs: 1}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if rc.SnapshotThreshold != 4 || rc.TrailingLogs != 1 {
		t.Errorf("SnapshotThreshold %d, TrailingLogs %d; want the overrides 4, 1", rc.SnapshotThreshold, rc.TrailingLogs)
	}
}
