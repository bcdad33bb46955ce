package admin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
)

// OperatorService commits operator-signed commands and lists the mesh's
// operators and join tokens.
//
// SubmitOperator returns once the command is committed (or refused). Its
// errors wrap the sentinels of this package so that the API answers with
// the right status: ErrForbidden (403) when the mesh refuses the signature
// — an unknown operator key, a role that does not permit the command, a
// replayed nonce —, ErrRefused (409) when the command is well signed but
// the mesh's rules refuse it (a protected range, an allow policy, a safety
// floor), ErrInvalid (400) when it is malformed or outside its time window,
// ErrNotFound (404) when what it names does not exist, ErrUnavailable
// (503) when it cannot be committed now. intel.ErrOperatorSignature (403)
// and intel.ErrOperatorMalformed (400) may be wrapped as they are.
type OperatorService interface {
	// MeshID is the ID of the mesh this node belongs to, the one operator
	// commands name in their header; "" while the node is not in a mesh.
	MeshID() string
	// SubmitOperator commits an operator-signed command mesh-wide.
	SubmitOperator(ctx context.Context, s intel.OperatorSigned) error
	// Operators lists the mesh's operator keys.
	Operators() []OperatorInfo
	// JoinTokens lists the mesh's join tokens (never their secrets, which
	// the mesh does not hold).
	JoinTokens() []JoinTokenInfo
}

// OperatorInfo is one operator key of the mesh.
type OperatorInfo struct {
	// KeyID is intel.OperatorKeyID of the key ("op:" and 16 hex digits).
	KeyID string             `json:"key_id"`
	Name  string             `json:"name"`
	Role  intel.OperatorRole `json:"role"`
	// PublicKey is the key in its text form (intel.FormatOperatorPublicKey).
	PublicKey string    `json:"public_key"`
	AddedAt   time.Time `json:"added_at,omitzero"`
	// AddedBy is the key ID of the operator who added it, or "bootstrap".
	AddedBy string `json:"added_by,omitempty"`
}

// JoinTokenInfo is one join token of the mesh: how many joins it admits,
// how many it has admitted, until when.
type JoinTokenInfo struct {
	// ID is intel.JoinTokenID of the token's public key ("jt:" and 16 hex
	// digits).
	ID      string    `json:"id"`
	Uses    int       `json:"uses"`
	Used    int       `json:"used"`
	Expires time.Time `json:"expires"`
	// CreatedBy is the key ID of the operator who created it.
	CreatedBy string `json:"created_by,omitempty"`
}

// OperatorState is the answer of GET /v1/operator: the mesh's ID, which a
// signed command must name, its operators and its join tokens.
type OperatorState struct {
	Mesh       string          `json:"mesh"`
	Operators  []OperatorInfo  `json:"operators"`
	JoinTokens []JoinTokenInfo `json:"join_tokens"`
	// FeedPolicies are the mesh's feed policies, by name, and Warninglist
	// the entries operators added to the warninglist (the built-in ones
	// are warninglist.Builtin()), when the node's OperatorService is a
	// FeedPolicySource.
	FeedPolicies []intel.FeedPolicy  `json:"feed_policies,omitempty"`
	Warninglist  []warninglist.Entry `json:"warninglist,omitempty"`
}

// FeedPolicySource is what an OperatorService may also answer: the mesh's
// feed policies and the operators' warninglist entries.
type FeedPolicySource interface {
	FeedPolicies() []intel.FeedPolicy
	Warninglist() []warninglist.Entry
}

// OperatorResult is the answer to a committed operator command.
type OperatorResult struct {
	Op intel.OperatorOp `json:"op"`
	// KeyID is the operator key that signed the command.
	KeyID string `json:"key_id"`
	// Target is what the command acts on: an indicator ("ipv4:203.0.113.7"),
	// a policy ID, a prefix, a member, an operator key ID or a join token
	// ID; empty for the mesh's rules and floors.
	Target string `json:"target,omitempty"`
	Nonce  string `json:"nonce"`
	// Policy is the policy a block or allow made, when this node already
	// holds it.
	Policy *PolicyView `json:"policy,omitempty"`
	// Count is how many indicators a block_bulk or allow_bulk committed:
	// all of the command's (a bulk command applies whole or not at all).
	Count int `json:"count,omitempty"`
	// Warnings name what the committed command did that is likely a
	// mistake: a set_flow whose flow an earlier flow shadows.
	Warnings []string `json:"warnings,omitempty"`
}

// TokenRole is the least API token role that may submit c: a mesh-wide
// change needs both an operator signature and a token whose role matches
// the command's (responder for block, allow and revoke; admin otherwise).
func TokenRole(c intel.OperatorCommand) Role {
	if c.RequiredRole() == intel.OperatorResponder {
		return RoleResponder
	}
	return RoleAdmin
}

// operatorTarget is what c acts on, as the audit trail and OperatorResult
// name it.
func operatorTarget(c intel.OperatorCommand) string {
	switch c.Op {
	case intel.OpBlock, intel.OpAllow:
		if c.Indicator != nil {
			return c.Indicator.Key()
		}
	case intel.OpBlockBulk, intel.OpAllowBulk:
		return fmt.Sprintf("%d indicators", len(c.Indicators))
	case intel.OpRevoke:
		return c.PolicyID
	case intel.OpProtect, intel.OpUnprotect:
		return c.Prefix
	case intel.OpSetZone:
		return "zone:" + c.Zone.Name
	case intel.OpRemoveZone:
		return "zone:" + c.ZoneName
	case intel.OpSetFlow:
		return "flow:" + c.Flow.Name
	case intel.OpRemoveFlow:
		return "flow:" + c.FlowName
	case intel.OpQuarantine, intel.OpRelease:
		return "host:" + c.Host.String()
	case intel.OpRemoveMember:
		return c.Member
	case intel.OpAddOperator:
		if len(c.OperatorKey) == ed25519.PublicKeySize {
			return intel.OperatorKeyID(ed25519.PublicKey(c.OperatorKey))
		}
	case intel.OpRemoveOperator:
		return c.OperatorKeyID
	case intel.OpSetFeedPolicy:
		if c.FeedPolicy != nil {
			return c.FeedPolicy.Name
		}
	case intel.OpRemoveFeedPolicy:
		return c.FeedPolicyName
	case intel.OpWarninglistAdd, intel.OpWarninglistRemove:
		if c.Indicator != nil {
			return c.Indicator.Key()
		}
	case intel.OpCreateJoinToken:
		if len(c.TokenKey) == ed25519.PublicKeySize {
			return intel.JoinTokenID(ed25519.PublicKey(c.TokenKey))
		}
	}
	return ""
}

// operatorDetail is the audit trail's account of c's parameters.
func operatorDetail(keyID string, c intel.OperatorCommand) string {
	d := fmt.Sprintf("operator=%s op=%s", keyID, c.Op)
	switch c.Op {
	case intel.OpBlock, intel.OpAllow:
		d += fmt.Sprintf(" ttl=%s wide=%t reason=%q", c.TTL(), c.Wide, c.Reason)
	case intel.OpBlockBulk, intel.OpAllowBulk:
		d += fmt.Sprintf(" count=%d ttl=%s wide=%t reason=%q first=%s", len(c.Indicators), c.TTL(), c.Wide, c.Reason, firstKeys(c.Indicators))
	case intel.OpSetCorroboration:
		d += fmt.Sprintf(" min_nodes=%d window=%s", c.MinNodes, c.Window())
	case intel.OpSetMinRisk:
		d += fmt.Sprintf(" min_risk=%d", c.MinRisk)
	case intel.OpSetDistributed:
		d += fmt.Sprintf(" distributed_min_sites=%d distributed_threshold=%d distributed_site_cap=%d",
			c.DistributedMinSites, c.DistributedThreshold, c.DistributedSiteCap)
	case intel.OpSetFloors:
		if c.Floors != nil {
			d += fmt.Sprintf(" min_ipv4_bits=%d min_ipv6_bits=%d", c.Floors.MinIPv4Bits, c.Floors.MinIPv6Bits)
		}
	case intel.OpAddOperator:
		d += fmt.Sprintf(" role=%s name=%q", c.OperatorRole, c.OperatorName)
	case intel.OpCreateJoinToken:
		d += fmt.Sprintf(" uses=%d ttl=%s", c.TokenUses, c.TokenTTL())
	}
	if c.Reason != "" && !hasPolicyFields(c.Op) {
		d += fmt.Sprintf(" reason=%q", c.Reason)
	}
	return d
}

// auditIndicators is how many of a bulk command's indicators the audit
// trail names; the count says how many there were.
const auditIndicators = 5

// firstKeys names the first few of inds, and how many more there are.
func firstKeys(inds []intel.Indicator) string {
	var b strings.Builder
	for i, ind := range inds {
		if i == auditIndicators {
			fmt.Fprintf(&b, ",+%d more", len(inds)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ind.Key())
	}
	return b.String()
}

// hasPolicyFields reports whether op carries a TTL, Wide and a reason of
// the policies it makes.
func hasPolicyFields(op intel.OperatorOp) bool {
	switch op {
	case intel.OpBlock, intel.OpAllow, intel.OpBlockBulk, intel.OpAllowBulk:
		return true
	}
	return false
}

func getOperator(s *Server, _ *call) (any, error) {
	ops := slices.Clone(s.operatorSvc.Operators())
	slices.SortFunc(ops, func(a, b OperatorInfo) int { return strings.Compare(a.KeyID, b.KeyID) })
	toks := slices.Clone(s.operatorSvc.JoinTokens())
	slices.SortFunc(toks, func(a, b JoinTokenInfo) int { return strings.Compare(a.ID, b.ID) })
	st := OperatorState{Mesh: s.operatorSvc.MeshID(), Operators: nonNil(ops), JoinTokens: nonNil(toks)}
	if fs, ok := s.operatorSvc.(FeedPolicySource); ok {
		st.FeedPolicies, st.Warninglist = fs.FeedPolicies(), fs.Warninglist()
	}
	return st, nil
}

func postOperatorCommand(s *Server, c *call) (any, error) {
	var signed intel.OperatorSigned
	if err := decode(c, &signed); err != nil {
		return nil, err
	}
	cmd, err := intel.OpenOperatorCommand(signed)
	if err != nil {
		if len(signed.Key) == ed25519.PublicKeySize {
			c.detail = "operator=" + signed.KeyID()
		}
		return nil, fmt.Errorf("operator command: %w", err)
	}
	keyID := signed.KeyID()
	c.action = "operator." + string(cmd.Op)
	c.target = operatorTarget(cmd)
	c.detail = operatorDetail(keyID, cmd)
	if need := TokenRole(cmd); !c.who.role.Allows(need) {
		return nil, fmt.Errorf("%w: a %s token may not submit %s: it needs a token of role %s as well as the operator's signature",
			ErrForbidden, c.who.role, cmd.Op, need)
	}
	if mesh := s.operatorSvc.MeshID(); mesh != "" && cmd.Header.Mesh != mesh {
		return nil, fmt.Errorf("%w: the command is for mesh %q, this node is in mesh %q", ErrInvalid, cmd.Header.Mesh, mesh)
	}
	if err := s.operatorSvc.SubmitOperator(c.r.Context(), signed); err != nil {
		return nil, fmt.Errorf("%s signed by %s: %w", cmd.Op, keyID, err)
	}
	res := OperatorResult{Op: cmd.Op, KeyID: keyID, Target: c.target, Nonce: cmd.Header.Nonce}
	switch cmd.Op {
	case intel.OpBlock, intel.OpAllow:
		if cmd.Indicator != nil {
			if p, ok := s.policySvc.MeshPolicy(intel.PolicyID(intel.Action(cmd.Op), *cmd.Indicator), s.now()); ok {
				res.Policy = &PolicyView{Policy: p, Scope: ScopeMesh}
			}
		}
	case intel.OpBlockBulk, intel.OpAllowBulk:
		res.Count = len(cmd.Indicators)
	case intel.OpSetFlow:
		res.Warnings = s.flowWarnings(*cmd.Flow) // segment.go
	}
	return res, nil
}

// isDenied reports whether err refuses a request for who made it rather
// than for what it asks.
func isDenied(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, intel.ErrOperatorSignature)
}
