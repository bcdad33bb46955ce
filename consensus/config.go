package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures one consensus participant.
type Config struct {
	// LocalID is this node's libp2p peer ID string. It is also the raft
	// ServerID and ServerAddress. Required; must match the host's ID.
	LocalID string
	// Site is the operator's name for where this node runs; it is recorded
	// in the roster.
	Site string
	// Bootstrap makes this node found a new mesh: if the stores hold no raft
	// state, it bootstraps a single-voter cluster and admits itself.
	Bootstrap bool
	// JoinToken is the shared secret joiners must present (compared in
	// constant time) and the one this node presents when it joins. Empty
	// disables admitting joiners through this node when it leads.
	JoinToken string
	// MaxVoters bounds the voter set. Joiners are admitted as non-voters;
	// the leader promotes healthy non-voters while there are fewer voters
	// than this, keeping the count odd where it can. Default 5; an odd
	// value is recommended (an even one is honoured as its odd floor when
	// growing).
	MaxVoters int
	// DeadVoterTimeout is how long a voter may fail the leader's heartbeats
	// before the leader demotes it to non-voter in favour of a healthy
	// non-voter. A dead voter with no replacement keeps its vote. Default
	// 30s.
	DeadVoterTimeout time.Duration
	// PromoteAfter is how long the leader must have heard from a non-voter
	// without a failed heartbeat before promoting it. Default 2s.
	PromoteAfter time.Duration
	// MembershipInterval is how often the leader reviews the voter set.
	// Default 500ms.
	MembershipInterval time.Duration

	// Raft timing. Zero values take LAN defaults (500ms, 500ms, 250ms, 50ms).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotThreshold and TrailingLogs override raft's defaults when set.
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// Logger receives this package's logs and raft's (raft's at warn and
	// above unless the logger is enabled for debug). Nil discards.
	Logger *slog.Logger
}

// Defaults for Config fields left zero.
const (
	DefaultMaxVoters          = 5
	DefaultDeadVoterTimeout   = 30 * time.Second
	DefaultPromoteAfter       = 2 * time.Second
	DefaultMembershipInterval = 500 * time.Millisecond
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
)

// withDefaults returns a copy of c with zero fields defaulted.
func (c Config) withDefaults() Config {
	if c.MaxVoters == 0 {
		c.MaxVoters = DefaultMaxVoters
	}
	if c.DeadVoterTimeout == 0 {
		c.DeadVoterTimeout = DefaultDeadVoterTimeout
	}
	if c.PromoteAfter == 0 {
		c.PromoteAfter = DefaultPromoteAfter
	}
	if c.MembershipInterval == 0 {
		c.MembershipInterval = DefaultMembershipInterval
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first invalid field, naming it and its value.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("consensus config: %s = %v: %s", field, v, why))
	}
	if c.LocalID == "" {
		bad("LocalID", `""`, "required (the libp2p peer ID of this node)")
	}
	if c.MaxVoters < 0 {
		bad("MaxVoters", c.MaxVoters, "must be at least 1")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DeadVoterTimeout", c.DeadVoterTimeout}, {"PromoteAfter", c.PromoteAfter}, {"MembershipInterval", c.MembershipInterval}, {"HeartbeatTimeout", c.HeartbeatTimeout}, {"ElectionTimeout", c.ElectionTimeout}, {"LeaderLeaseTimeout", c.LeaderLeaseTimeout}, {"CommitTimeout", c.CommitTimeout}} {
		if d.v < 0 {
			bad(d.name, d.v, "must not be negative")
		}
	}
	if c.HeartbeatTimeout > 0 && c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		bad("LeaderLeaseTimeout", c.LeaderLeaseTimeout, fmt.Sprintf("must not exceed HeartbeatTimeout (%s)", c.HeartbeatTimeout))
	}
	if c.HeartbeatTimeout > 0 && c.ElectionTimeout > 0 && c.ElectionTimeout < c.HeartbeatTimeout {
		bad("ElectionTimeout", c.ElectionTimeout, fmt.Sprintf("must be at least HeartbeatTimeout (%s)", c.HeartbeatTimeout))
	}
	return errors.Join(errs...)
}
