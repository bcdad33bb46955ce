package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/internal/confcheck"
)

// Config configures one consensus participant. The fields with a yaml tag
// are the node's YAML section "consensus", whose defaults are DefaultConfig
// and whose rules are Validate; the others are set by the node when it
// starts (its identity, its logger) or by tests (timing), and cannot be
// written in YAML.
type Config struct {
	// Bootstrap makes this node found a new mesh: if the stores hold no raft
	// state, it bootstraps a single-voter cluster and admits itself.
	// Exactly one node of a new mesh sets it.
	Bootstrap bool `yaml:"bootstrap"`
	// Join lists members (multiaddrs ending in /p2p/<id>) to ask for
	// admission when the node is not yet in the mesh. New does not read
	// it: the node calls Join with each until one admits it.
	Join []string `yaml:"join"`
	// JoinToken is the secret of an operator-issued join token (`meshward
	// token create --join`) with which this node proves its right to join:
	// it signs its node ID and the mesh's ID with a key derived from it,
	// and the mesh checks the proof against the token's public half.
	// Required to join; at least intel.MinJoinTokenSecret bytes. Members
	// need no token to admit others.
	JoinToken string `yaml:"join_token"`
	// MaxVoters bounds the voter set; the rest are non-voters. Joiners are
	// admitted as non-voters; the leader promotes healthy non-voters while
	// there are fewer voters than this. Odd, so that every voter adds
	// fault tolerance. Default 5.
	MaxVoters int `yaml:"max_voters"`
	// Standbys is how many non-voters are kept as servers beside the
	// voters, ready to be promoted. MaxVoters + Standbys members are Raft
	// servers; a member that joins when they are all there becomes an edge:
	// on the roster, not in the raft configuration, applying the entries a
	// majority of the voters certifies (edge.go). Default 2; -1 keeps
	// none (0 takes the default).
	Standbys int `yaml:"standbys"`
	// DeadVoterTimeout is how long a voter may fail the leader's heartbeats
	// before the leader demotes it to non-voter in favour of a healthy
	// non-voter. A dead voter with no replacement keeps its vote. Default
	// 30s.
	DeadVoterTimeout time.Duration `yaml:"dead_voter_timeout"`
	// PromoteAfter is how long the leader must have heard from a non-voter
	// without a failed heartbeat before promoting it. Default 2s.
	PromoteAfter time.Duration `yaml:"promote_after"`
	// LeaveOnShutdown makes a clean shutdown remove this node from the
	// mesh for good (it must join again with the token to come back). New
	// does not read it: the node calls Leave before Close.
	LeaveOnShutdown bool `yaml:"leave_on_shutdown"`
	// BootstrapOperators are the first operator keys of a mesh this node
	// founds, in the text form `meshward operator keygen` prints
	// ("meshward-operator-ed25519 <base64 key> [name]"); each becomes an
	// admin operator in the mesh's initialisation entry. At least one is
	// required with Bootstrap; ignored otherwise (and once the mesh is
	// founded).
	BootstrapOperators []string `yaml:"bootstrap_operators"`

	// LocalID is this node's libp2p peer ID string. It is also the raft
	// ServerID and ServerAddress. Required by New; must match the host's
	// ID.
	LocalID string `yaml:"-"`
	// Site is the operator's name for where this node runs; it is recorded
	// in the roster.
	Site string `yaml:"-"`
	// BootstrapRules are the rules of automatic blocking a mesh this node
	// founds starts with (the node fills them from its corroboration
	// section); nil takes DefaultRules. Operators change them later.
	BootstrapRules *Rules `yaml:"-"`
	// ChainRecentEntries and ChainRecentBytes bound the recent chain
	// entries kept to serve edges that fall behind (zero: 4096 entries,
	// the raft log cache's bytes); beyond them an edge catches up from a
	// certified snapshot.
	ChainRecentEntries int `yaml:"-"`
	ChainRecentBytes   int `yaml:"-"`
	// EdgeSyncInterval is how often an edge looks for gaps to fill.
	// Default 200ms.
	EdgeSyncInterval time.Duration `yaml:"-"`
	// EdgePersistInterval is how often a running edge writes what it
	// applied (the whole state: a thousand members' roster is hundreds
	// of kilobytes); it also writes it when it closes, and an edge
	// killed between two only fetches again what it applied since the
	// last. Default 150 × EdgeSyncInterval (30s).
	EdgePersistInterval time.Duration `yaml:"-"`
	// EdgePollInterval is how often an edge that knows of no gap asks a
	// voter for what follows its head (an edge that was away hears
	// nothing of a quiet mesh). Default 50 × EdgeSyncInterval (10s): the
	// voters' certificates of every new head make a missed entry a gap
	// the edge fetches at once.
	EdgePollInterval time.Duration `yaml:"-"`
	// MembershipInterval is how often the leader reviews the voter set.
	// Default 500ms.
	MembershipInterval time.Duration `yaml:"-"`
	// GateRefreshInterval is how often the raft gate reads raft's
	// configuration without being asked: a safety net, since a change of
	// it (a configuration entry stored, a log range deleted, a snapshot
	// restored) asks at once (gate.go). Default 5s.
	GateRefreshInterval time.Duration `yaml:"-"`

	// Raft timing. Zero values take LAN defaults (500ms, 500ms, 250ms, 50ms).
	HeartbeatTimeout   time.Duration `yaml:"-"`
	ElectionTimeout    time.Duration `yaml:"-"`
	LeaderLeaseTimeout time.Duration `yaml:"-"`
	CommitTimeout      time.Duration `yaml:"-"`

	// SnapshotThreshold is how many entries the log grows by before raft
	// snapshots the state (it checks every two to four minutes) and
	// compacts the log, keeping the last TrailingLogs entries for
	// followers that lag behind. Zero values take
	// DefaultSnapshotThreshold and DefaultTrailingLogs.
	SnapshotThreshold uint64 `yaml:"-"`
	TrailingLogs      uint64 `yaml:"-"`

	// Logger receives this package's logs and raft's (raft's at warn and
	// above unless the logger is enabled for debug). Nil discards.
	Logger *slog.Logger `yaml:"-"`
	// VerifyCache remembers the envelopes whose signatures this node has
	// verified, by the SHA-256 of their exact bytes: the FSM opens the
	// proofs of automatic blocks through it, so a proof verified on
	// gossip receipt or by the leader's early check costs a hash in
	// Apply. The node shares one with its gossip pipeline. Nil: New makes
	// one of intel.DefaultVerifyCacheSize for this participant alone.
	VerifyCache *intel.VerifyCache `yaml:"-"`
}

// Defaults for Config fields left zero.
const (
	DefaultMaxVoters          = 5
	DefaultStandbys           = 2
	DefaultEdgeSyncInterval   = 200 * time.Millisecond
	DefaultDeadVoterTimeout   = 30 * time.Second
	DefaultPromoteAfter       = 2 * time.Second
	DefaultMembershipInterval = 500 * time.Millisecond
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	// Entries are small (an automatic block with its proofs is about
	// 1.5 KB): 32,768 trailing entries are some 50 MB on disk, and let a
	// follower that was away for seconds at the peak rate (minutes at
	// ordinary rates) catch up from the log rather than from a snapshot
	// of the whole state. A snapshot costs a pass over every policy, so
	// it waits for twice raft's default growth.
	DefaultSnapshotThreshold = 16384
	DefaultTrailingLogs      = 32768
)

// DefaultConfig returns the defaults of the YAML section. The fields set
// at run time stay zero; New gives them their defaults.
func DefaultConfig() Config {
	return Config{
		MaxVoters:        DefaultMaxVoters,
		Standbys:         DefaultStandbys,
		DeadVoterTimeout: DefaultDeadVoterTimeout,
		PromoteAfter:     DefaultPromoteAfter,
	}
}

// withDefaults returns a copy of c with zero fields defaulted.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxVoters == 0 {
		c.MaxVoters = d.MaxVoters
	}
	if c.Standbys == 0 {
		c.Standbys = d.Standbys
	}
	if c.EdgeSyncInterval == 0 {
		c.EdgeSyncInterval = DefaultEdgeSyncInterval
	}
	if c.EdgePollInterval == 0 {
		c.EdgePollInterval = 50 * c.EdgeSyncInterval
	}
	if c.EdgePersistInterval == 0 {
		c.EdgePersistInterval = 150 * c.EdgeSyncInterval
	}
	if c.GateRefreshInterval == 0 {
		c.GateRefreshInterval = gateRefresh
	}
	if c.DeadVoterTimeout == 0 {
		c.DeadVoterTimeout = d.DeadVoterTimeout
	}
	if c.PromoteAfter == 0 {
		c.PromoteAfter = d.PromoteAfter
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
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks the YAML section and returns every problem, joined, each
// a *confcheck.FieldError naming the field relative to the section
// ("max_voters", "join[0]"). It does not look at the fields set at run
// time: New checks those.
func (c Config) Validate() error {
	var p confcheck.Problems
	for i, a := range c.Join {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			p.Add(fmt.Sprintf("join[%d]", i), a, "want a multiaddr ending in /p2p/<peer id>: "+err.Error())
		}
	}
	if c.Bootstrap && len(c.Join) > 0 {
		p.Add("join", c.Join, "a bootstrapping node founds a mesh and joins none; set one of consensus.bootstrap and consensus.join")
	}
	if c.Bootstrap && len(c.BootstrapOperators) == 0 {
		p.Add("bootstrap_operators", "[]", "a node that founds a mesh needs at least one operator public key: "+
			"make one with `meshward operator keygen` and list the public key it prints (meshward-operator-ed25519 ...)")
	}
	for i, s := range c.BootstrapOperators {
		if _, err := parseBootstrapOperator(s); err != nil {
			p.Add(fmt.Sprintf("bootstrap_operators[%d]", i), s, err.Error()+" (make a key with `meshward operator keygen`)")
		}
	}
	if len(c.Join) > 0 && c.JoinToken == "" {
		p.Add("join_token", `""`, "required to join a mesh: make one on a running node with `meshward token create --join`")
	}
	if c.JoinToken != "" && len(c.JoinToken) < intel.MinJoinTokenSecret {
		p.Add("join_token", "(secret)", fmt.Sprintf("is %d bytes, at least %d are required: use the secret printed by `meshward token create --join`",
			len(c.JoinToken), intel.MinJoinTokenSecret))
	}
	// An even count adds a voter without adding fault tolerance (four
	// voters survive one failure, as three do), so it is refused here
	// rather than silently rounded down when the leader grows the set.
	if c.MaxVoters < 1 || c.MaxVoters%2 == 0 {
		p.Add("max_voters", c.MaxVoters, "must be odd and at least 1")
	}
	if c.Standbys < -1 || c.Standbys > 64 {
		p.Add("standbys", c.Standbys, "must be between 1 and 64, or -1 for none (0 takes the default, 2)")
	}
	if c.DeadVoterTimeout <= 0 {
		p.Add("dead_voter_timeout", c.DeadVoterTimeout, "must be positive")
	}
	if c.PromoteAfter <= 0 {
		p.Add("promote_after", c.PromoteAfter, "must be positive")
	}
	return p.Err()
}

// parseBootstrapOperator reads one bootstrap operator key: its text form
// and an optional name after it.
func parseBootstrapOperator(s string) (Operator, error) {
	key, err := intel.ParseOperatorPublicKey(s)
	if err != nil {
		return Operator{}, err
	}
	fields := strings.Fields(s)
	name := "bootstrap"
	if len(fields) > 2 {
		name = strings.Join(fields[2:], " ")
	}
	if len(name) > maxOperatorName {
		return Operator{}, fmt.Errorf("operator name is %d bytes, limit %d", len(name), maxOperatorName)
	}
	return Operator{KeyID: intel.OperatorKeyID(key), Key: key, Role: intel.OperatorAdmin, Name: name}, nil
}

// validateRuntime checks the fields the node sets when it starts.
func (c Config) validateRuntime() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("%s = %v: %s", field, v, why))
	}
	if c.LocalID == "" {
		bad("LocalID", `""`, "required (the libp2p peer ID of this node)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MembershipInterval", c.MembershipInterval}, {"HeartbeatTimeout", c.HeartbeatTimeout}, {"ElectionTimeout", c.ElectionTimeout}, {"LeaderLeaseTimeout", c.LeaderLeaseTimeout}, {"CommitTimeout", c.CommitTimeout}} {
		if d.v < 0 {
			bad(d.name, d.v, "must not be negative")
		}
	}
	if r := c.BootstrapRules; r != nil {
		if err := r.Validate(); err != nil {
			bad("BootstrapRules", *r, err.Error())
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

// check is New's validation: the section and the run-time fields, after
// defaults.
func (c Config) check() error {
	if err := errors.Join(c.Validate(), c.validateRuntime()); err != nil {
		return fmt.Errorf("consensus config: %w", err)
	}
	return nil
}
