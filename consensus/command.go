package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/meshward/meshward/intel"
)

// CommandType is the first byte of every raft log entry this package writes.
type CommandType uint8

// IgnoreUnknownFlag may be set on a command type that an older node is
// allowed to skip. A type without it that the FSM does not know panics in
// Apply, so that replicas never diverge silently.
const IgnoreUnknownFlag CommandType = 0x80

// Command types. Values are part of the log format: never renumber.
const (
	CmdPutPolicy    CommandType = 1 // Policy: add or merge
	CmdRevokePolicy CommandType = 2 // PolicyID: delete
	CmdProtect      CommandType = 3 // Prefix: add a protected range (drops overlapping blocks)
	CmdUnprotect    CommandType = 4 // Prefix: remove a protected range
	CmdAdmit        CommandType = 5 // Member: add to or update in the roster
	CmdRemoveMember CommandType = 6 // Member.ID: remove from the roster
)

func (t CommandType) String() string {
	switch t {
	case CmdPutPolicy:
		return "put-policy"
	case CmdRevokePolicy:
		return "revoke-policy"
	case CmdProtect:
		return "protect"
	case CmdUnprotect:
		return "unprotect"
	case CmdAdmit:
		return "admit"
	case CmdRemoveMember:
		return "remove-member"
	}
	return fmt.Sprintf("command(%d)", uint8(t))
}

// Command is one change to the replicated state.
type Command struct {
	Type CommandType `json:"-"`
	// At is the proposer's clock when it proposed. The FSM uses only this
	// as "now" (for expiry and admission times), never the local clock.
	// Propose fills it when zero.
	At       time.Time     `json:"at"`
	Policy   *intel.Policy `json:"policy,omitempty"`
	PolicyID string        `json:"policy_id,omitempty"`
	Prefix   string        `json:"prefix,omitempty"`
	Member   *Member       `json:"member,omitempty"`
}

// Member is one admitted node in the roster.
type Member struct {
	ID         string    `json:"id"` // libp2p peer ID
	Site       string    `json:"site,omitempty"`
	Voter      bool      `json:"voter"`
	AdmittedAt time.Time `json:"admitted_at"`
	// Addrs are the node's listen multiaddrs as it reported them when it
	// joined; every node adds them to its peerstore so that any voter can
	// reach any other after the leader that admitted them is gone.
	Addrs []string `json:"addrs,omitempty"`
}

// Limits on what a command may carry.
const (
	maxCommandSize = 256 << 10
	maxEvidence    = 32
	maxMemberAddrs = 16
	maxIDLen       = 128
)

// Encode returns the log entry for c: its type byte followed by JSON.
func (c Command) Encode() ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Type, err)
	}
	if len(body)+1 > maxCommandSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalidCommand, c.Type, len(body)+1, maxCommandSize)
	}
	return append([]byte{byte(c.Type)}, body...), nil
}

// DecodeCommand parses a log entry written by Encode.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return Command{}, fmt.Errorf("%w: empty entry", ErrInvalidCommand)
	}
	var c Command
	if err := json.Unmarshal(b[1:], &c); err != nil {
		return Command{}, fmt.Errorf("%w: decode %s: %v", ErrInvalidCommand, CommandType(b[0]), err)
	}
	c.Type = CommandType(b[0])
	return c, nil
}

// validate checks what can be checked without the state, so that a bad
// command is refused by the proposer before it reaches the log. The FSM
// checks again (a log entry may come from another node's code).
func (c *Command) validate() error {
	if c.At.IsZero() {
		return fmt.Errorf("%w: %s without a timestamp", ErrInvalidCommand, c.Type)
	}
	switch c.Type {
	case CmdPutPolicy:
		if c.Policy == nil {
			return fmt.Errorf("%w: put-policy without a policy", ErrInvalidCommand)
		}
		if err := c.Policy.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidCommand, err)
		}
	case CmdRevokePolicy:
		if c.PolicyID == "" {
			return fmt.Errorf("%w: revoke-policy without a policy id", ErrInvalidCommand)
		}
	case CmdProtect, CmdUnprotect:
		if _, err := parsePrefix(c.Prefix); err != nil {
			return err
		}
	case CmdAdmit, CmdRemoveMember:
		if c.Member == nil || c.Member.ID == "" || len(c.Member.ID) > maxIDLen {
			return fmt.Errorf("%w: %s needs a member with an id of 1 to %d bytes", ErrInvalidCommand, c.Type, maxIDLen)
		}
		if len(c.Member.Addrs) > maxMemberAddrs {
			return fmt.Errorf("%w: member %s lists %d addresses, limit %d", ErrInvalidCommand, c.Member.ID, len(c.Member.Addrs), maxMemberAddrs)
		}
	default:
		if c.Type&IgnoreUnknownFlag == 0 {
			return fmt.Errorf("%w: unknown type %s", ErrInvalidCommand, c.Type)
		}
	}
	return nil
}

// Errors. Apply returns the FSM's refusals as the entry's response; Propose
// returns them to the proposer, wrapped, on whichever node it ran.
var (
	// ErrProtected: a block would cover a protected range.
	ErrProtected = errors.New("indicator overlaps a protected range")
	// ErrAllowed: a block would cover something under an active allow policy.
	ErrAllowed = errors.New("indicator is under an active allow policy")
	// ErrNotMember: the requester is not in the roster or the configuration.
	ErrNotMember = errors.New("not a member of the mesh")
	// ErrBadToken: the join token did not match.
	ErrBadToken = errors.New("join token refused")
	// ErrJoinDisabled: the leader has no join token configured.
	ErrJoinDisabled = errors.New("joining is disabled on the leader")
	// ErrInvalidCommand: the command is malformed.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrNoLeader: no leader is known right now (retried by Propose and Join).
	ErrNoLeader = errors.New("no leader")
	// ErrTooManyHops: a forwarded request went round more than maxHops nodes.
	ErrTooManyHops = errors.New("request forwarded too many times")
	// ErrClosed: the Consensus has been closed.
	ErrClosed = errors.New("consensus closed")
)

// final reports whether err is an answer rather than a reason to retry.
func final(err error) bool {
	for _, e := range []error{ErrProtected, ErrAllowed, ErrNotMember, ErrBadToken, ErrJoinDisabled, ErrInvalidCommand, ErrClosed, ErrLastVoter} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
