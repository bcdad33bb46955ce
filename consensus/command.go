package consensus

import (
	"crypto/ed25519"
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
	CmdPutPolicy    CommandType = 1 // Policy + Proofs: an automatic block, proven by signed sightings
	CmdRevokePolicy CommandType = 2 // refused: an operator command now
	CmdProtect      CommandType = 3 // refused: an operator command now
	CmdUnprotect    CommandType = 4 // refused: an operator command now
	CmdAdmit        CommandType = 5 // Member + Join: a joiner's admission, proven by its join token; or a member's voter flag
	CmdRemoveMember CommandType = 6 // refused: an operator command now
	CmdInit         CommandType = 7 // Init: found the mesh (the first command, once)
	CmdOperator     CommandType = 8 // Operator: an operator-signed command
	CmdLeave        CommandType = 9 // Leave: a member leaves, signed with its own key
	// CmdProvenBlock is how a CmdPutPolicy is written: the policy as JSON,
	// the proofs as raw bytes (proof_command.go).
	CmdProvenBlock CommandType = 10
)

func (t CommandType) String() string {
	switch t {
	case CmdPutPolicy, CmdProvenBlock: // one command, one label
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
	case CmdInit:
		return "init"
	case CmdOperator:
		return "operator"
	case CmdLeave:
		return "leave"
	case CmdFeedBlock:
		return "feed-block"
	case CmdQuarantine:
		return "quarantine"
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
	// Proofs are the signed sighting envelopes (the exact bytes signed)
	// that justify an automatic block.
	Proofs   [][]byte              `json:"proofs,omitempty"`
	Init     *Init                 `json:"init,omitempty"`
	Operator *intel.OperatorSigned `json:"operator,omitempty"`
	Leave    *LeaveRequest         `json:"leave,omitempty"`
	// Join is the proof that admits a new member (CmdAdmit).
	Join *JoinProof `json:"join,omitempty"`
	// Feed proves a feed block (CmdFeedBlock, feedpolicy.go).
	Feed *FeedProof `json:"feed,omitempty"`
	// Quarantine is an automatic quarantine's request (CmdQuarantine,
	// proof_quarantine.go), proven by Proofs.
	Quarantine *QuarantineRequest `json:"quarantine,omitempty"`
}

// JoinProof is a joiner's proof that it holds the secret of one of the
// mesh's join tokens: the token's public key and intel.SignJoin over the
// mesh's ID and the joiner's node ID. It admits that node into that mesh
// only.
type JoinProof struct {
	TokenKey []byte `json:"token_key"`
	Sig      []byte `json:"sig"`
}

// Member is one admitted node in the roster.
type Member struct {
	ID         string    `json:"id"` // libp2p peer ID
	Site       string    `json:"site,omitempty"`
	Voter      bool      `json:"voter"`
	AdmittedAt time.Time `json:"admitted_at"`
	// Addrs are the node's listen multiaddrs as it reported them when it
	// joined, for connectivity only (never protected): every node adds
	// them to its peerstore so that any voter can reach any other after
	// the leader that admitted them is gone.
	Addrs []string `json:"addrs,omitempty"`
	// Observed are the host prefixes ("203.0.113.7/32") the node was seen
	// connecting from when it joined, recorded by the member that served
	// its join (the founding node's: its own interface addresses). They,
	// not Addrs, are the member's protected addresses.
	Observed []string `json:"observed,omitempty"`
	// Token is the ID of the join token that admitted the node and
	// AdmittedBy the key ID of the operator who created that token
	// ("bootstrap" for the founding node). Apply sets both.
	Token      string `json:"token,omitempty"`
	AdmittedBy string `json:"admitted_by,omitempty"`
}

// Limits on what a command may carry.
const (
	maxCommandSize = 256 << 10
	maxEvidence    = 32
	maxMemberAddrs = 16
	// maxObserved bounds the addresses a member is recorded (and
	// protected) as connecting from.
	maxObserved = 4
	maxIDLen    = 128
)

// Encode returns the log entry for c: its type byte followed by JSON; a
// CmdPutPolicy is written as a CmdProvenBlock (proofs as raw bytes).
func (c Command) Encode() ([]byte, error) {
	if c.Type == CmdPutPolicy {
		return c.encodeProvenBlock()
	}
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
	if CommandType(b[0]) == CmdProvenBlock {
		return decodeProvenBlock(b)
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
func (c *Command) validate() *RefusalError {
	bad := func(format string, args ...any) *RefusalError {
		return refuse(c.Type, "malformed", ErrInvalidCommand, format, args...)
	}
	if c.At.IsZero() {
		return bad("%s without a timestamp", c.Type)
	}
	switch c.Type {
	case CmdPutPolicy:
		if c.Policy == nil {
			return bad("put-policy without a policy")
		}
		if err := c.Policy.Validate(); err != nil {
			return bad("%v", err)
		}
		if c.Policy.Action != intel.ActionBlock {
			return refuse(c.Type, "action", ErrRefused, "an automatic policy may only block, not %s; allows and manual blocks are operator commands", c.Policy.Action)
		}
		if len(c.Proofs) == 0 {
			return refuse(c.Type, "no_proof", ErrRefused, "an automatic block of %s carries no signed sightings", c.Policy.Indicator)
		}
		if len(c.Proofs) > maxProofs {
			return refuse(c.Type, "too_many_proofs", ErrInvalidCommand, "%d proofs, limit %d", len(c.Proofs), maxProofs)
		}
		for i, p := range c.Proofs {
			if len(p) > intel.MaxEnvelopeSize {
				return refuse(c.Type, "proof_malformed", ErrInvalidCommand, "proof %d is %d bytes, limit %d", i, len(p), intel.MaxEnvelopeSize)
			}
		}
	case CmdRevokePolicy, CmdProtect, CmdUnprotect, CmdRemoveMember:
		return refuse(c.Type, "unsigned", ErrRefused, "a %s needs an operator signature (send it as an operator command)", c.Type)
	case CmdAdmit:
		if c.Member == nil || c.Member.ID == "" || len(c.Member.ID) > maxIDLen {
			return bad("%s needs a member with an id of 1 to %d bytes", c.Type, maxIDLen)
		}
		if len(c.Member.Addrs) > maxMemberAddrs {
			return bad("member %s lists %d addresses, limit %d", c.Member.ID, len(c.Member.Addrs), maxMemberAddrs)
		}
		if len(c.Member.Site) > maxSiteLen {
			return bad("site is %d bytes, limit %d", len(c.Member.Site), maxSiteLen)
		}
		if len(c.Member.Observed) > maxObserved {
			return bad("member %s was observed at %d addresses, limit %d", c.Member.ID, len(c.Member.Observed), maxObserved)
		}
		if j := c.Join; j != nil && (len(j.TokenKey) != ed25519.PublicKeySize || len(j.Sig) != ed25519.SignatureSize) {
			return bad("join proof of %s: want an ed25519 token key and signature", c.Member.ID)
		}
	case CmdInit:
		if c.Init == nil {
			return bad("init without its content")
		}
		if err := c.Init.validate(); err != nil {
			return bad("init: %v", err)
		}
	case CmdOperator:
		if c.Operator == nil {
			return bad("operator command without a signed command")
		}
	case CmdLeave:
		if c.Leave == nil || c.Leave.Node == "" || len(c.Leave.Node) > maxIDLen || len(c.Leave.Sig) > 128 || c.Leave.Issued.IsZero() {
			return bad("leave needs a node id, an issue time and a signature")
		}
	case CmdFeedBlock:
		return c.validateFeedBlock()
	case CmdQuarantine:
		return c.validateQuarantine()
	default:
		if c.Type&IgnoreUnknownFlag == 0 {
			return bad("unknown type %s", c.Type)
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
	// ErrBadToken: the join token is unknown, used up or expired, or the
	// proof made with it does not verify.
	ErrBadToken = errors.New("join token refused")
	// ErrRateLimited: the member refused a join attempt because this peer
	// tried too often (retried by Join).
	ErrRateLimited = errors.New("too many join attempts")
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
	for _, e := range []error{ErrRefused, ErrProtected, ErrAllowed, ErrNotMember, ErrBadToken, ErrInvalidCommand, ErrClosed, ErrLastVoter} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
