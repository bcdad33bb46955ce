package consensus

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
)

// init founds the mesh: accepted once, as the first command. Its founder
// becomes the first member, a voter.
func (f *fsm) init(c *Command, now time.Time) (func(), *RefusalError) {
	if f.meshID != "" {
		return nil, refuse(c.Type, "already_initialised", ErrRefused, "the mesh %s is initialised", f.meshID)
	}
	if len(f.roster)+f.policies.len()+len(f.protected) > 0 {
		return nil, refuse(c.Type, "not_first", ErrRefused, "the initialisation entry must come first")
	}
	in := *c.Init
	ops := make(map[string]Operator, len(in.Operators))
	for _, o := range in.Operators {
		o.Key = bytes.Clone(o.Key)
		o.AddedAt, o.AddedBy = now, "bootstrap"
		ops[o.KeyID] = o
	}
	var founder *Member
	if in.Founder != nil {
		m := *in.Founder
		key := nodeKey(m.ID)
		if key == nil {
			return nil, refuse(c.Type, "malformed", ErrInvalidCommand, "founder id %q names no ed25519 key", m.ID)
		}
		if _, isOp := ops[intel.OperatorKeyID(key)]; isOp {
			return nil, refuse(c.Type, "node_key", ErrRefused, "founder %s's key is an operator key", shortID(m.ID))
		}
		if _, rerr := checkObserved(c.Type, m.Observed); rerr != nil {
			return nil, rerr
		}
		m.Addrs, m.Observed = slices.Clone(m.Addrs), slices.Clone(m.Observed)
		m.Voter, m.AdmittedAt, m.Token, m.AdmittedBy = true, now, "", "bootstrap"
		founder = &m
	}
	return func() {
		f.meshID, f.rules, f.operators = in.MeshID, in.Rules, ops
		if founder != nil {
			f.roster[founder.ID] = *founder
			f.touchRoster(founder.ID)
			f.rebuildMemberIPs()
		}
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

// admit is CmdAdmit: a joiner's admission, or the leader's record of a
// member's suffrage.
//
// A node not on the roster is admitted only with a join proof that the
// FSM checks from the entry alone: the token exists, has uses left and
// has not expired at the entry's time; the proof verifies for this node
// ID and this mesh; the node key is not an operator key; the observed
// addresses are host prefixes (at least one, at most maxObserved) of
// which none that would become protected is covered by an active block
// (admitting a node never lifts a block). Admission spends one use of the
// token and records it and the operator who created it; the member's
// protected addresses are its observed ones that name a host from
// elsewhere (loopback and link-local are recorded, never protected).
//
// A member already on the roster is never admitted again: with a proof
// the entry is refused (already_member, spending nothing); without one,
// only its Voter flag may change (the leader mirrors raft's suffrage).
func (f *fsm) admit(c *Command, now time.Time) (func(), *RefusalError) {
	m := *c.Member
	if old, ok := f.roster[m.ID]; ok {
		if c.Join != nil {
			return nil, refuse(c.Type, "already_member", ErrRefused, "%s is a member already", shortID(m.ID))
		}
		if m.Site != old.Site || !slices.Equal(m.Addrs, old.Addrs) || !slices.Equal(m.Observed, old.Observed) {
			return nil, refuse(c.Type, "admit_changes_member", ErrRefused, "an admit of member %s may change its voter flag only", shortID(m.ID))
		}
		old.Voter = m.Voter
		return func() {
			f.roster[m.ID] = old
			f.touchRoster(m.ID)
		}, nil
	}
	if c.Join == nil {
		return nil, refuse(c.Type, "no_proof", ErrRefused, "the admission of %s carries no join proof", shortID(m.ID))
	}
	key := nodeKey(m.ID)
	if key == nil {
		return nil, refuse(c.Type, "malformed", ErrInvalidCommand, "member id %q names no ed25519 key", m.ID)
	}
	if _, isOp := f.operators[intel.OperatorKeyID(key)]; isOp {
		return nil, refuse(c.Type, "node_key", ErrRefused, "member %s's key is an operator key", shortID(m.ID))
	}
	tokenID := intel.JoinTokenID(c.Join.TokenKey)
	tok, rerr := f.checkJoinToken(c.Type, tokenID, now)
	if rerr != nil {
		return nil, rerr
	}
	if !bytes.Equal(tok.Key, c.Join.TokenKey) {
		return nil, refuse(c.Type, "unknown_token", ErrBadToken, "no join token with this key (%s)", tokenID)
	}
	if err := intel.VerifyJoin(tok.Key, f.meshID, m.ID, c.Join.Sig); err != nil {
		return nil, refuse(c.Type, "bad_proof", ErrBadToken, "join proof for %s with token %s: %v", shortID(m.ID), tokenID, err)
	}
	protect, rerr := checkObserved(c.Type, m.Observed)
	if rerr != nil {
		return nil, rerr
	}
	if len(m.Observed) == 0 {
		return nil, refuse(c.Type, "bad_observed", ErrInvalidCommand, "the admission of %s names no address it was seen connecting from", shortID(m.ID))
	}
	for _, p := range protect {
		if b, ok := f.blockCovering(p, now); ok {
			return nil, refuse(c.Type, "collides_with_block", ErrRefused, "%s connects from %s, under the active block of %s (policy %s)",
				shortID(m.ID), p.Addr(), b.Indicator, b.ID)
		}
	}
	m.Addrs, m.Observed = slices.Clone(m.Addrs), slices.Clone(m.Observed)
	m.Voter, m.AdmittedAt, m.Token, m.AdmittedBy = false, now, tokenID, tok.CreatedBy
	return func() {
		f.spendJoinToken(tokenID)
		f.roster[m.ID] = m
		delete(f.departed, m.ID)
		f.touchRoster(m.ID)
		f.addMemberIPs(m)
	}, nil
}

// checkObserved checks a member's observed addresses: each a host prefix
// in canonical form (as netip.Prefix prints it), none unspecified or
// multicast (no connection comes from those). It returns those that
// become protected: the ones that name a host from elsewhere, not
// loopback or link-local.
func checkObserved(t CommandType, observed []string) ([]netip.Prefix, *RefusalError) {
	var protect []netip.Prefix
	for _, s := range observed {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.String() != s || p.Bits() != p.Addr().BitLen() || p.Addr().Is4In6() {
			return nil, refuse(t, "bad_observed", ErrInvalidCommand, "observed address %q: want a host prefix such as 203.0.113.7/32", s)
		}
		ip := p.Addr()
		if ip.IsUnspecified() || ip.IsMulticast() {
			return nil, refuse(t, "bad_observed", ErrInvalidCommand, "observed address %s: no connection comes from it", s)
		}
		if protectable(ip) {
			protect = append(protect, p)
		}
	}
	return protect, nil
}

// protectable reports whether a member's address becomes a protected
// range: not loopback or link-local, which name no mesh host from
// elsewhere (and loopback stays blockable, so that a test mesh on
// 127.0.0.1 still exercises enforcement; the floors refuse such blocks
// anyway).
func protectable(ip netip.Addr) bool {
	return !(ip.IsUnspecified() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast())
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
		f.touchRoster(lv.Node)
		f.addDeparted(lv.Node, now)
		f.rebuildMemberIPs()
	}, nil
}
