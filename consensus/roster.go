package consensus

import (
	"bytes"
	"crypto/ed25519"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// init founds the mesh: accepted once, as the first command.
func (f *fsm) init(c *Command, now time.Time) (func(), *RefusalError) {
	if f.meshID != "" {
		return nil, refuse(c.Type, "already_initialised", ErrRefused, "the mesh %s is initialised", f.meshID)
	}
	if len(f.roster)+len(f.policies)+len(f.protected) > 0 {
		return nil, refuse(c.Type, "not_first", ErrRefused, "the initialisation entry must come first")
	}
	in := *c.Init
	ops := make(map[string]Operator, len(in.Operators))
	for _, o := range in.Operators {
		o.Key = bytes.Clone(o.Key)
		o.AddedAt, o.AddedBy = now, "bootstrap"
		ops[o.KeyID] = o
	}
	return func() {
		f.meshID, f.rules, f.operators = in.MeshID, in.Rules, ops
	}, nil
}

// nodeKey is the ed25519 public key a node ID names, or nil.
func nodeKey(id string) ed25519.PublicKey {
	pid, err := peer.Decode(id)
	if err != nil {
		return nil
	}
	pk, err := pid.ExtractPublicKey()
	if err != nil || pk.Type() != crypto.Ed25519 {
		return nil
	}
	raw, err := pk.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil
	}
	return raw
}

// admit records a roster entry written by the leader. For a member already
// on the roster only the Voter flag may change: the leader mirrors raft's
// suffrage into the roster, and nothing else of a member changes without a
// proof.
//
// LEGACY ADMISSION (issue 11, to be replaced by the join handshake with
// operator-issued tokens): a node not on the roster is admitted on the
// leader's word after its shared join-token check (join.go). Until the
// handshake lands, the entry carries no proof a replica could check.
func (f *fsm) admit(c *Command, _ time.Time) (func(), *RefusalError) {
	m := *c.Member
	m.Addrs = slices.Clone(m.Addrs)
	if old, ok := f.roster[m.ID]; ok {
		if m.Site != old.Site || !slices.Equal(m.Addrs, old.Addrs) {
			return nil, refuse(c.Type, "admit_changes_member", ErrRefused, "an admit of member %s may change its voter flag only", shortID(m.ID))
		}
		old.Voter = m.Voter
		return func() { f.roster[m.ID] = old }, nil
	}
	key := nodeKey(m.ID)
	if key == nil {
		return nil, refuse(c.Type, "malformed", ErrInvalidCommand, "member id %q names no ed25519 key", m.ID)
	}
	if _, isOp := f.operators[intel.OperatorKeyID(key)]; isOp {
		return nil, refuse(c.Type, "node_key", ErrRefused, "member %s's key is an operator key", shortID(m.ID))
	}
	if m.AdmittedAt.IsZero() {
		m.AdmittedAt = c.At
	}
	return func() {
		f.roster[m.ID] = m
		delete(f.departed, m.ID)
		if added := f.rebuildMemberIPs(); len(added) > 0 {
			f.dropBlocksOverlapping(added...)
		}
	}, nil
}

// leave removes a member that asked to leave, with its own signature over
// LeaveMessage issued after it was admitted and not long ago.
func (f *fsm) leave(c *Command, now time.Time) (func(), *RefusalError) {
	lv := *c.Leave
	m, ok := f.roster[lv.Node]
	if !ok {
		return nil, refuse(c.Type, "not_member", ErrNotMember, "%s is not on the roster", shortID(lv.Node))
	}
	key := nodeKey(lv.Node)
	if key == nil || !ed25519.Verify(key, LeaveMessage(f.meshID, lv.Node, lv.Issued), lv.Sig) {
		return nil, refuse(c.Type, "bad_signature", ErrRefused, "the leave of %s is not signed by its node key for this mesh", shortID(lv.Node))
	}
	if lv.Issued.Before(now.Add(-leaveLife)) || lv.Issued.After(now.Add(signedSkew)) || lv.Issued.Before(m.AdmittedAt) {
		return nil, refuse(c.Type, "expired", ErrRefused, "the leave of %s was issued at %s", shortID(lv.Node), lv.Issued.Format(time.RFC3339))
	}
	return func() {
		delete(f.roster, lv.Node)
		f.addDeparted(lv.Node, now)
		f.rebuildMemberIPs()
	}, nil
}
