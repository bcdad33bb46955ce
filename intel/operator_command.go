package intel

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// OperatorOp names an operator command.
type OperatorOp string

// The operator commands. Block, allow and revoke need the responder role
// (a wide block or allow, past the breadth floor, needs admin); the rest
// need admin.
const (
	OpBlock            OperatorOp = "block"
	OpAllow            OperatorOp = "allow"
	OpRevoke           OperatorOp = "revoke"
	OpProtect          OperatorOp = "protect"
	OpUnprotect        OperatorOp = "unprotect"
	OpRemoveMember     OperatorOp = "remove_member"
	OpSetCorroboration OperatorOp = "set_corroboration"
	OpSetFloors        OperatorOp = "set_floors"
	OpAddOperator      OperatorOp = "add_operator"
	OpRemoveOperator   OperatorOp = "remove_operator"
	OpCreateJoinToken  OperatorOp = "create_join_token"
	// OpBlockBulk and OpAllowBulk are block and allow over many
	// indicators in one signed command (one Raft entry), sharing the TTL,
	// the reason and Wide. The FSM applies all of them or none: one
	// indicator that a floor, a protected range or an allow refuses
	// refuses the command, and the refusal names that indicator.
	OpBlockBulk OperatorOp = "block_bulk"
	OpAllowBulk OperatorOp = "allow_bulk"
	// OpSetMinRisk sets the least risk score (0..100, 0: off) that an
	// automatic block's proof must reach (consensus Rules.MinRisk).
	OpSetMinRisk OperatorOp = "set_min_risk"
	// OpSetDistributed sets the distributed rule of automatic blocks
	// (consensus Rules.Distributed*): partial sightings of at least
	// DistributedMinSites members whose capped counts reach
	// DistributedThreshold; all three 0 turn it off.
	OpSetDistributed OperatorOp = "set_distributed"
	// OpSetFeedPolicy adds or replaces the feed policy of that name
	// (FeedPolicy); OpRemoveFeedPolicy removes one (FeedPolicyName).
	OpSetFeedPolicy    OperatorOp = "set_feed_policy"
	OpRemoveFeedPolicy OperatorOp = "remove_feed_policy"
	// OpWarninglistAdd adds an address, range or domain (Indicator, with
	// Reason) to the mesh's warninglist, whose entries no feed policy
	// ever blocks; OpWarninglistRemove removes one the operators added
	// (the built-in entries stay).
	OpWarninglistAdd    OperatorOp = "warninglist_add"
	OpWarninglistRemove OperatorOp = "warninglist_remove"
	// OpSetZone adds or replaces a segmentation zone (Zone);
	// OpRemoveZone removes one (ZoneName) that no flow names. OpSetFlow
	// adds or replaces a flow between zones (Flow); OpRemoveFlow removes
	// one (FlowName). All four need admin.
	OpSetZone    OperatorOp = "set_zone"
	OpRemoveZone OperatorOp = "remove_zone"
	OpSetFlow    OperatorOp = "set_flow"
	OpRemoveFlow OperatorOp = "remove_flow"
	// OpQuarantine isolates one host (Host) mesh-wide for TTLSeconds
	// from the command's entry (0: until released, admin only), with
	// Reason; OpRelease ends a host's quarantine. Both need the
	// responder role: quarantine is an incident handler's first move.
	OpQuarantine OperatorOp = "quarantine"
	OpRelease    OperatorOp = "release"
)

// Bounds of operator command fields.
const (
	MaxOperatorName    = 64
	MaxJoinTokenUses   = 1000
	MaxJoinTokenTTL    = 30 * 24 * time.Hour
	MinJoinTokenSecret = 32
	// MaxBulkIndicators bounds the indicators of one bulk command, so that
	// its entry stays well under the Raft entry limit.
	MaxBulkIndicators = 2000
)

// OperatorCommand is the body an operator signs: the header that binds it
// to one mesh and one moment, the operation, and that operation's fields
// (the others stay empty). Durations are whole seconds so that the JSON is
// exact.
type OperatorCommand struct {
	Header OperatorHeader `json:"header"`
	Op     OperatorOp     `json:"op"`

	// Block, allow: the indicator, its TTL (0: no expiry), the reason,
	// and Wide to pass the breadth floor (admin only).
	Indicator  *Indicator `json:"indicator,omitempty"`
	TTLSeconds int64      `json:"ttl_seconds,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Wide       bool       `json:"wide,omitempty"`
	// Block bulk, allow bulk: the indicators (1..MaxBulkIndicators, no
	// two with the same key), with TTLSeconds, Reason and Wide as above.
	Indicators []Indicator `json:"indicators,omitempty"`
	// Revoke: the policy.
	PolicyID string `json:"policy_id,omitempty"`
	// Protect, unprotect: an address range in CIDR notation.
	Prefix string `json:"prefix,omitempty"`
	// Remove member: the node ID.
	Member string `json:"member,omitempty"`
	// Set corroboration: k distinct members within the window.
	MinNodes      int   `json:"min_nodes,omitempty"`
	WindowSeconds int64 `json:"window_seconds,omitempty"`
	// Set floors.
	Floors *Floors `json:"floors,omitempty"`
	// Set min risk: 0..100, 0 turns the check off.
	MinRisk int `json:"min_risk,omitempty"`
	// Set distributed: sites, threshold and per-site cap (all 0: off).
	DistributedMinSites  int `json:"distributed_min_sites,omitempty"`
	DistributedThreshold int `json:"distributed_threshold,omitempty"`
	DistributedSiteCap   int `json:"distributed_site_cap,omitempty"`
	// Add operator: the key, its role and a name; remove operator: the key
	// ID (OperatorKeyID).
	OperatorKey   []byte       `json:"operator_key,omitempty"`
	OperatorRole  OperatorRole `json:"operator_role,omitempty"`
	OperatorName  string       `json:"operator_name,omitempty"`
	OperatorKeyID string       `json:"operator_key_id,omitempty"`
	// Create join token: the public half of the token's key (see
	// JoinTokenKey; the secret never enters the log), how many joins it
	// admits, and for how long.
	TokenKey        []byte `json:"token_key,omitempty"`
	TokenUses       int    `json:"token_uses,omitempty"`
	TokenTTLSeconds int64  `json:"token_ttl_seconds,omitempty"`
	// Set feed policy: the policy; remove feed policy: its name.
	FeedPolicy     *FeedPolicy `json:"feed_policy,omitempty"`
	FeedPolicyName string      `json:"feed_policy_name,omitempty"`
	// Set zone: the zone; remove zone: its name.
	Zone     *Zone  `json:"zone,omitempty"`
	ZoneName string `json:"zone_name,omitempty"`
	// Set flow: the flow; remove flow: its name.
	Flow     *Flow  `json:"flow,omitempty"`
	FlowName string `json:"flow_name,omitempty"`
	// Quarantine, release: the host (with TTLSeconds and Reason for a
	// quarantine).
	Host netip.Addr `json:"host,omitzero"`
}

// TTL is TTLSeconds as a duration.
func (c OperatorCommand) TTL() time.Duration { return time.Duration(c.TTLSeconds) * time.Second }

// Window is WindowSeconds as a duration.
func (c OperatorCommand) Window() time.Duration { return time.Duration(c.WindowSeconds) * time.Second }

// TokenTTL is TokenTTLSeconds as a duration.
func (c OperatorCommand) TokenTTL() time.Duration {
	return time.Duration(c.TokenTTLSeconds) * time.Second
}

// RequiredRole is the least role that may sign c.
func (c OperatorCommand) RequiredRole() OperatorRole {
	switch c.Op {
	case OpBlock, OpAllow, OpBlockBulk, OpAllowBulk:
		if c.Wide {
			return OperatorAdmin
		}
		return OperatorResponder
	case OpRevoke, OpRelease:
		return OperatorResponder
	case OpQuarantine:
		if c.TTLSeconds == 0 {
			return OperatorAdmin // until released
		}
		return OperatorResponder
	}
	return OperatorAdmin
}

// Permits reports whether role r may sign c.
func (r OperatorRole) Permits(c OperatorCommand) bool {
	return r == OperatorAdmin || (r == OperatorResponder && c.RequiredRole() == OperatorResponder)
}

// Validate checks the header and that the operation's fields are present,
// well formed and bounded. It does not check the command against the
// state of the mesh (the FSM does that).
func (c OperatorCommand) Validate() error {
	if err := c.Header.Validate(); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrOperatorMalformed, c.Op, fmt.Sprintf(format, args...))
	}
	if len(c.Reason) > 1024 {
		return bad("reason is %d bytes, limit 1024", len(c.Reason))
	}
	switch c.Op {
	case OpBlock, OpAllow:
		if c.Indicator == nil {
			return bad("indicator is required")
		}
		if err := c.Indicator.Validate(); err != nil {
			return bad("%v", err)
		}
		if c.TTLSeconds < 0 {
			return bad("ttl_seconds must not be negative")
		}
	case OpBlockBulk, OpAllowBulk:
		if n := len(c.Indicators); n == 0 || n > MaxBulkIndicators {
			return bad("%d indicators: want 1..%d", n, MaxBulkIndicators)
		}
		seen := make(map[string]int, len(c.Indicators))
		for i, ind := range c.Indicators {
			if err := ind.Validate(); err != nil {
				return bad("indicators[%d]: %v", i, err)
			}
			if j, dup := seen[ind.Key()]; dup {
				return bad("indicators[%d]: %s repeats indicators[%d]", i, ind, j)
			}
			seen[ind.Key()] = i
		}
		if c.TTLSeconds < 0 {
			return bad("ttl_seconds must not be negative")
		}
	case OpRevoke:
		if len(c.PolicyID) != 16 {
			return bad("policy_id must be 16 hex digits")
		}
		if _, err := hex.DecodeString(c.PolicyID); err != nil {
			return bad("policy_id must be 16 hex digits")
		}
	case OpProtect, OpUnprotect:
		if p, err := ParsePrefix(c.Prefix); err != nil || p.String() != c.Prefix {
			return bad("prefix %q: want a canonical CIDR", c.Prefix)
		}
	case OpRemoveMember:
		if c.Member == "" || len(c.Member) > 128 {
			return bad("member is required")
		}
	case OpSetCorroboration:
		if c.MinNodes < 1 || c.MinNodes > 64 {
			return bad("min_nodes %d: want 1..64", c.MinNodes)
		}
		if c.WindowSeconds < 1 || c.Window() > 7*24*time.Hour {
			return bad("window_seconds %d: want 1s..7d", c.WindowSeconds)
		}
	case OpSetMinRisk:
		if c.MinRisk < 0 || c.MinRisk > 100 {
			return bad("min_risk %d: want 0..100", c.MinRisk)
		}
	case OpSetDistributed:
		if c.DistributedMinSites < 0 || c.DistributedThreshold < 0 || c.DistributedSiteCap < 0 {
			return bad("distributed_min_sites %d, distributed_threshold %d, distributed_site_cap %d: none may be negative",
				c.DistributedMinSites, c.DistributedThreshold, c.DistributedSiteCap)
		}
	case OpSetFloors:
		if c.Floors == nil {
			return bad("floors are required")
		}
		if err := c.Floors.Validate(); err != nil {
			return bad("%v", err)
		}
	case OpAddOperator:
		if len(c.OperatorKey) != ed25519.PublicKeySize {
			return bad("operator_key must be an ed25519 public key")
		}
		if !c.OperatorRole.Valid() {
			return bad("operator_role %q: want responder or admin", c.OperatorRole)
		}
		if c.OperatorName == "" || len(c.OperatorName) > MaxOperatorName {
			return bad("operator_name must be 1 to %d bytes", MaxOperatorName)
		}
	case OpRemoveOperator:
		if c.OperatorKeyID == "" || len(c.OperatorKeyID) > 64 {
			return bad("operator_key_id is required")
		}
	case OpCreateJoinToken:
		if len(c.TokenKey) != ed25519.PublicKeySize {
			return bad("token_key must be an ed25519 public key")
		}
		if c.TokenUses < 1 || c.TokenUses > MaxJoinTokenUses {
			return bad("token_uses %d: want 1..%d", c.TokenUses, MaxJoinTokenUses)
		}
		if c.TokenTTLSeconds < 1 || c.TokenTTL() > MaxJoinTokenTTL {
			return bad("token_ttl_seconds %d: want 1s..%s", c.TokenTTLSeconds, MaxJoinTokenTTL)
		}
	case OpSetFeedPolicy:
		if c.FeedPolicy == nil {
			return bad("feed_policy is required")
		}
		if err := c.FeedPolicy.Validate(); err != nil {
			return bad("feed_policy: %v", err)
		}
	case OpRemoveFeedPolicy:
		if err := ValidFeedPolicyName(c.FeedPolicyName); err != nil {
			return bad("feed_policy_name: %v", err)
		}
	case OpWarninglistAdd, OpWarninglistRemove:
		if c.Indicator == nil {
			return bad("indicator is required")
		}
		if err := c.Indicator.Validate(); err != nil {
			return bad("indicator: %v", err)
		}
		if !slices.Contains(FeedPolicyTypes, c.Indicator.Type) {
			return bad("indicator of type %s: a warninglist holds %v", c.Indicator.Type, FeedPolicyTypes)
		}
	case OpSetZone:
		if c.Zone == nil {
			return bad("zone is required")
		}
		if err := c.Zone.Validate(); err != nil {
			return bad("zone: %v", err)
		}
	case OpRemoveZone:
		if err := ValidSegmentName("zone_name", c.ZoneName); err != nil {
			return bad("%v", err)
		}
	case OpSetFlow:
		if c.Flow == nil {
			return bad("flow is required")
		}
		if err := c.Flow.Validate(); err != nil {
			return bad("flow: %v", err)
		}
	case OpRemoveFlow:
		if err := ValidSegmentName("flow_name", c.FlowName); err != nil {
			return bad("%v", err)
		}
	case OpQuarantine, OpRelease:
		if err := (Quarantine{Host: c.Host}).Validate(); err != nil {
			return bad("host: %v", err)
		}
		if c.Op == OpRelease {
			break
		}
		if c.TTLSeconds < 0 || c.TTL() > MaxQuarantineTTL {
			return bad("ttl_seconds %d: want 0..%d", c.TTLSeconds, int64(MaxQuarantineTTL/time.Second))
		}
		if len(c.Reason) > MaxQuarantineText {
			return bad("reason is %d bytes, limit %d", len(c.Reason), MaxQuarantineText)
		}
	default:
		return fmt.Errorf("%w: unknown op %q", ErrOperatorMalformed, c.Op)
	}
	return nil
}

// SignOperatorCommand validates c, encodes it and signs it.
func SignOperatorCommand(priv ed25519.PrivateKey, c OperatorCommand) (OperatorSigned, error) {
	if err := c.Validate(); err != nil {
		return OperatorSigned{}, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return OperatorSigned{}, fmt.Errorf("encode operator command: %w", err)
	}
	return SignOperator(priv, b), nil
}

// OpenOperatorCommand verifies s's signature and decodes its body strictly
// (an unknown field is an error) into a validated command. Whether the key
// is an operator's, with a role that permits the command, is the caller's
// check.
func OpenOperatorCommand(s OperatorSigned) (OperatorCommand, error) {
	if err := s.Verify(); err != nil {
		return OperatorCommand{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	dec.DisallowUnknownFields()
	var c OperatorCommand
	if err := dec.Decode(&c); err != nil {
		return OperatorCommand{}, fmt.Errorf("%w: body: %v", ErrOperatorMalformed, err)
	}
	if dec.More() {
		return OperatorCommand{}, fmt.Errorf("%w: body: trailing data", ErrOperatorMalformed)
	}
	if err := c.Validate(); err != nil {
		return OperatorCommand{}, err
	}
	return c, nil
}
