package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshward/meshward/intel"
)

// ProposeOperator commits an operator-signed command (see
// intel.SignOperatorCommand) from any node. The FSM checks the signature,
// that the key is one of the mesh's operators with a role that permits the
// command, that the command names this mesh, is within its time window and
// was never seen before, and then the command's own rules (floors,
// protected ranges, allows, the last admin). Refusals are *RefusalError
// (ErrRefused, ErrProtected, ErrAllowed or ErrInvalidCommand); as with
// Propose, cancelling ctx stops the wait, not the commit.
func (c *Consensus) ProposeOperator(ctx context.Context, s intel.OperatorSigned) error {
	return c.Propose(ctx, Command{Type: CmdOperator, Operator: &s})
}

// operator checks and applies an operator-signed command.
func (f *fsm) operator(c *Command, now time.Time) (func(), *RefusalError) {
	const t = CmdOperator
	s := *c.Operator
	cmd, err := intel.OpenOperatorCommand(s)
	switch {
	case errors.Is(err, intel.ErrOperatorSignature):
		return nil, refuse(t, "bad_signature", ErrRefused, "%v", err)
	case err != nil:
		return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
	}
	keyID := s.KeyID()
	op, ok := f.operators[keyID]
	if !ok || !bytes.Equal(op.Key, s.Key) {
		return nil, refuse(t, "not_operator", ErrRefused, "key %s is not an operator of this mesh", keyID)
	}
	if _, isNode := f.roster[intel.NodeID(s.Key)]; isNode {
		return nil, refuse(t, "node_key", ErrRefused, "key %s is a member's node key; node keys cannot sign operator commands", keyID)
	}
	if !op.Role.Permits(cmd) {
		return nil, refuse(t, "role", ErrRefused, "operator %s (%s) may not sign %s (needs %s)", keyID, op.Role, cmd.Op, cmd.RequiredRole())
	}
	h := cmd.Header
	if h.Mesh != f.meshID {
		return nil, refuse(t, "wrong_mesh", ErrRefused, "command is for mesh %q, this is %q", h.Mesh, f.meshID)
	}
	if err := h.ValidAt(now, signedSkew); err != nil {
		return nil, refuse(t, "expired", ErrRefused, "%v", err)
	}
	if _, seen := f.nonces[h.Nonce]; seen {
		return nil, refuse(t, "replayed_nonce", ErrRefused, "nonce %s was already used", h.Nonce)
	}
	if len(f.nonces) >= maxNonces && f.liveNonces(now) >= maxNonces {
		return nil, refuse(t, "nonce_table_full", ErrRefused, "%d operator commands in flight, limit %d", maxNonces, maxNonces)
	}
	change, rerr := f.operatorOp(cmd, op, now)
	if rerr != nil {
		return nil, rerr
	}
	return func() {
		f.nonces[h.Nonce] = h.Expires
		if f.nextNonceExpiry.IsZero() || h.Expires.Before(f.nextNonceExpiry) {
			f.nextNonceExpiry = h.Expires
		}
		change()
	}, nil
}

func (f *fsm) liveNonces(now time.Time) int {
	n := 0
	for _, exp := range f.nonces {
		if now.Before(exp) {
			n++
		}
	}
	return n
}

// operatorOp checks one operation against the state and returns its change.
func (f *fsm) operatorOp(cmd intel.OperatorCommand, op Operator, now time.Time) (func(), *RefusalError) {
	const t = CmdOperator
	author := "operator:" + op.KeyID
	switch cmd.Op {
	case intel.OpBlock, intel.OpAllow:
		p, rerr := f.operatorPolicy(cmd, *cmd.Indicator, op, author, now)
		if rerr != nil {
			return nil, rerr
		}
		return func() { f.store(p, now) }, nil
	case intel.OpBlockBulk, intel.OpAllowBulk:
		// All or nothing: every indicator passes the checks of a single
		// block or allow, or the command is refused with the first that
		// does not, named with its position.
		ps := make([]intel.Policy, len(cmd.Indicators))
		for i, ind := range cmd.Indicators {
			p, rerr := f.operatorPolicy(cmd, ind, op, author, now)
			if rerr != nil {
				if rerr.Reason == "ttl_cap" {
					return nil, rerr // the command's TTL, not this indicator's
				}
				return nil, &RefusalError{Command: t, Reason: rerr.Reason, Err: fmt.Errorf("indicators[%d] %s: %w", i, ind, rerr.Err)}
			}
			ps[i] = p
		}
		return func() {
			for _, p := range ps {
				f.store(p, now)
			}
		}, nil
	case intel.OpRevoke:
		return func() {
			f.overturnID(cmd.PolicyID, now)
			f.del(cmd.PolicyID)
		}, nil
	case intel.OpSetFeedPolicy, intel.OpRemoveFeedPolicy, intel.OpWarninglistAdd, intel.OpWarninglistRemove:
		return f.feedOperatorOp(cmd)
	case intel.OpSetZone, intel.OpRemoveZone, intel.OpSetFlow, intel.OpRemoveFlow, intel.OpQuarantine, intel.OpRelease:
		return f.segOperatorOp(cmd, op, now)
	case intel.OpProtect:
		p, err := parsePrefix(cmd.Prefix)
		if err != nil {
			return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
		}
		return func() {
			f.protect(p)
			f.dropBlocksOverlapping(p)
		}, nil
	case intel.OpUnprotect:
		p, err := parsePrefix(cmd.Prefix)
		if err != nil {
			return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
		}
		return func() { f.unprotect(p) }, nil
	case intel.OpRemoveMember:
		id := cmd.Member
		return func() {
			if _, ok := f.roster[id]; ok {
				delete(f.roster, id)
				f.touchRoster(id)
				f.addDeparted(id, now)
				f.rebuildMemberIPs()
			}
		}, nil
	case intel.OpSetCorroboration:
		r := f.rules
		r.MinNodes, r.Window = cmd.MinNodes, cmd.Window()
		if err := r.Validate(); err != nil {
			return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
		}
		return func() { f.rules = r }, nil
	case intel.OpSetDistributed:
		return f.setDistributed(cmd)
	case intel.OpSetMinRisk:
		r := f.rules
		r.MinRisk = cmd.MinRisk
		if err := r.Validate(); err != nil {
			return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
		}
		return func() { f.rules = r }, nil
	case intel.OpSetFloors:
		r := f.rules
		r.Floors = *cmd.Floors
		return func() { f.rules = r }, nil
	case intel.OpAddOperator:
		key := cmd.OperatorKey
		if _, isNode := f.roster[intel.NodeID(key)]; isNode {
			return nil, refuse(t, "node_key", ErrRefused, "the key is a member's node key; node keys cannot be operators")
		}
		id := intel.OperatorKeyID(key)
		old, exists := f.operators[id]
		if !exists && len(f.operators) >= maxOperators {
			return nil, refuse(t, "too_many_operators", ErrRefused, "the mesh holds %d operator keys, limit %d", len(f.operators), maxOperators)
		}
		if exists && old.Role == intel.OperatorAdmin && cmd.OperatorRole != intel.OperatorAdmin && f.admins() == 1 {
			return nil, refuse(t, "last_admin", ErrRefused, "%s is the last admin operator", id)
		}
		o := Operator{KeyID: id, Key: bytes.Clone(key), Role: cmd.OperatorRole, Name: cmd.OperatorName, AddedAt: now, AddedBy: op.KeyID}
		if exists {
			o.AddedAt, o.AddedBy = old.AddedAt, old.AddedBy
		}
		return func() { f.operators[id] = o }, nil
	case intel.OpRemoveOperator:
		id := cmd.OperatorKeyID
		old, ok := f.operators[id]
		if !ok {
			return nil, refuse(t, "unknown_operator", ErrRefused, "no operator key %s", id)
		}
		if old.Role == intel.OperatorAdmin && f.admins() == 1 {
			return nil, refuse(t, "last_admin", ErrRefused, "%s is the last admin operator", id)
		}
		return func() { delete(f.operators, id) }, nil
	case intel.OpCreateJoinToken:
		id := intel.JoinTokenID(cmd.TokenKey)
		if _, ok := f.tokens[id]; ok {
			return nil, refuse(t, "duplicate_token", ErrRefused, "join token %s exists", id)
		}
		live := 0
		for _, tok := range f.tokens {
			if now.Before(tok.Expires) {
				live++
			}
		}
		if live >= maxJoinTokens {
			return nil, refuse(t, "too_many_tokens", ErrRefused, "%d join tokens live, limit %d", live, maxJoinTokens)
		}
		tok := JoinToken{ID: id, Key: bytes.Clone(cmd.TokenKey), Uses: cmd.TokenUses, CreatedAt: now,
			Expires: now.Add(cmd.TokenTTL()), CreatedBy: op.KeyID}
		return func() { f.tokens[id] = tok }, nil
	}
	return nil, refuse(t, "malformed", ErrInvalidCommand, "unknown op %q", cmd.Op)
}

// operatorPolicy checks an operator's block or allow of ind (one of a
// bulk command's indicators, or a single command's) and returns the
// policy to store: a responder's lasts 1s to responderTTLCap; the floors
// apply unless an admin signed it wide; a block must not cover a
// protected range, a member's address or an active allow.
func (f *fsm) operatorPolicy(cmd intel.OperatorCommand, ind intel.Indicator, op Operator, author string, now time.Time) (intel.Policy, *RefusalError) {
	const t = CmdOperator
	ttl := cmd.TTL()
	if op.Role != intel.OperatorAdmin && (ttl <= 0 || ttl > responderTTLCap) {
		return intel.Policy{}, refuse(t, "ttl_cap", ErrRefused, "a responder's %s lasts 1s to %s, not %s", cmd.Op, responderTTLCap, ttl)
	}
	wide := cmd.Wide && op.Role == intel.OperatorAdmin
	action := intel.ActionBlock
	floor := f.rules.Floors.CheckBlock
	if cmd.Op == intel.OpAllow || cmd.Op == intel.OpAllowBulk {
		action, floor = intel.ActionAllow, f.rules.Floors.CheckAllow
	}
	if err := floor(ind, wide); err != nil {
		return intel.Policy{}, refuse(t, "floor", ErrRefused, "%w", err)
	}
	if action == intel.ActionBlock {
		if rerr := f.blockVeto(t, ind, now); rerr != nil {
			return intel.Policy{}, rerr
		}
	}
	return intel.NewPolicy(action, ind, cmd.Reason, author, now, ttl), nil
}

func (f *fsm) admins() int {
	n := 0
	for _, o := range f.operators {
		if o.Role == intel.OperatorAdmin {
			n++
		}
	}
	return n
}
