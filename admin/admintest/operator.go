package admintest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// operatorSkew is how far in the future a command's issue time may lie
// when the fake commits it.
const operatorSkew = time.Minute

func (n *Node) now() time.Time {
	if n.Clock != nil {
		return n.Clock()
	}
	return time.Now()
}

// MeshID implements admin.OperatorService.
func (n *Node) MeshID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Mesh
}

// Operators implements admin.OperatorService.
func (n *Node) Operators() []admin.OperatorInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.OperatorSet)
}

// JoinTokens implements admin.OperatorService.
func (n *Node) JoinTokens() []admin.JoinTokenInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.TokenSet)
}

// AddOperator registers pub as an operator key with role and name, as the
// mesh's bootstrap does.
func (n *Node) AddOperator(pub ed25519.PublicKey, role intel.OperatorRole, name string) admin.OperatorInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	oi := admin.OperatorInfo{KeyID: intel.OperatorKeyID(pub), Name: name, Role: role,
		PublicKey: intel.FormatOperatorPublicKey(pub), AddedAt: n.now().UTC(), AddedBy: "bootstrap"}
	n.OperatorSet = append(n.OperatorSet, oi)
	return oi
}

// FailSubmits makes SubmitOperator return err (nil: succeed again) once a
// command is verified, before it changes anything.
func (n *Node) FailSubmits(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.SubmitErr = err
}

// Commands returns the operator commands committed so far, oldest first.
func (n *Node) Commands() []intel.OperatorCommand {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.commands)
}

// SubmitOperator implements admin.OperatorService as the FSM would: it
// verifies the signature and decodes the command (intel.OpenOperatorCommand),
// checks the mesh ID, the time window, the nonce, that the key is a
// registered operator whose role permits the command, and applies it to
// the fake's state. Errors wrap the sentinels of package admin.
func (n *Node) SubmitOperator(_ context.Context, s intel.OperatorSigned) error {
	c, err := intel.OpenOperatorCommand(s)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	if c.Header.Mesh != n.Mesh {
		return fmt.Errorf("%w: command for mesh %q, not %q", admin.ErrInvalid, c.Header.Mesh, n.Mesh)
	}
	if err := c.Header.ValidAt(now, operatorSkew); err != nil {
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	keyID := s.KeyID()
	i := slices.IndexFunc(n.OperatorSet, func(o admin.OperatorInfo) bool { return o.KeyID == keyID })
	if i < 0 {
		return fmt.Errorf("%w: %s is not an operator key of this mesh", admin.ErrForbidden, keyID)
	}
	if role := n.OperatorSet[i].Role; !role.Permits(c) {
		return fmt.Errorf("%w: operator %s has role %s, %s needs %s", admin.ErrForbidden, keyID, role, c.Op, c.RequiredRole())
	}
	if n.nonces[c.Header.Nonce] {
		return fmt.Errorf("%w: nonce %s was already used (a replayed command)", admin.ErrForbidden, c.Header.Nonce)
	}
	if n.SubmitErr != nil {
		return n.SubmitErr
	}
	if err := n.apply(c, keyID, now); err != nil {
		return err
	}
	n.nonces[c.Header.Nonce] = true
	n.commands = append(n.commands, c)
	return nil
}

// apply changes the fake's state as the committed command c would.
func (n *Node) apply(c intel.OperatorCommand, keyID string, now time.Time) error {
	switch c.Op {
	case intel.OpBlock, intel.OpAllow:
		p := intel.NewPolicy(intel.Action(c.Op), *c.Indicator, c.Reason, "operator:"+keyID, c.Header.Issued, c.TTL())
		n.mesh[p.ID] = p
	case intel.OpBlockBulk, intel.OpAllowBulk:
		// All or nothing, as the FSM: a block covering a protected range
		// refuses the command, naming the indicator and its position.
		action := intel.ActionBlock
		if c.Op == intel.OpAllowBulk {
			action = intel.ActionAllow
		}
		if action == intel.ActionBlock {
			for i, ind := range c.Indicators {
				for _, pr := range n.St.Mesh.Protected {
					if ind.Overlaps(intel.Indicator{Type: intel.CIDR, Value: pr}) {
						return fmt.Errorf("%w: indicators[%d] %s: covers protected range %s", admin.ErrRefused, i, ind, pr)
					}
				}
			}
		}
		for _, ind := range c.Indicators {
			p := intel.NewPolicy(action, ind, c.Reason, "operator:"+keyID, c.Header.Issued, c.TTL())
			n.mesh[p.ID] = p
		}
	case intel.OpRevoke:
		if _, ok := n.mesh[c.PolicyID]; !ok {
			return fmt.Errorf("%w: no mesh-wide policy %s", admin.ErrNotFound, c.PolicyID)
		}
		delete(n.mesh, c.PolicyID)
	case intel.OpProtect:
		if !slices.Contains(n.St.Mesh.Protected, c.Prefix) {
			n.St.Mesh.Protected = append(n.St.Mesh.Protected, c.Prefix)
		}
	case intel.OpUnprotect:
		i := slices.Index(n.St.Mesh.Protected, c.Prefix)
		if i < 0 {
			return fmt.Errorf("%w: %s is not a protected range", admin.ErrNotFound, c.Prefix)
		}
		n.St.Mesh.Protected = slices.Delete(n.St.Mesh.Protected, i, i+1)
	case intel.OpRemoveMember:
		i := slices.IndexFunc(n.MemberSet, func(m admin.Member) bool { return m.ID == c.Member })
		if i < 0 {
			return fmt.Errorf("%w: no member %s", admin.ErrNotFound, c.Member)
		}
		n.MemberSet = slices.Delete(n.MemberSet, i, i+1)
	case intel.OpSetCorroboration:
		n.Corroboration.MinNodes, n.Corroboration.Window = c.MinNodes, c.Window()
	case intel.OpSetFloors:
		n.Floors = *c.Floors
	case intel.OpSetMinRisk:
		n.MinRisk = c.MinRisk
	case intel.OpSetDistributed:
		// Held by the mesh's rules; the fake keeps only the command.
	case intel.OpAddOperator:
		pub := ed25519.PublicKey(c.OperatorKey)
		id := intel.OperatorKeyID(pub)
		if slices.ContainsFunc(n.OperatorSet, func(o admin.OperatorInfo) bool { return o.KeyID == id }) {
			return fmt.Errorf("%w: %s is already an operator key", admin.ErrRefused, id)
		}
		n.OperatorSet = append(n.OperatorSet, admin.OperatorInfo{KeyID: id, Name: c.OperatorName, Role: c.OperatorRole,
			PublicKey: intel.FormatOperatorPublicKey(pub), AddedAt: c.Header.Issued.UTC(), AddedBy: keyID})
	case intel.OpRemoveOperator:
		i := slices.IndexFunc(n.OperatorSet, func(o admin.OperatorInfo) bool { return o.KeyID == c.OperatorKeyID })
		if i < 0 {
			return fmt.Errorf("%w: no operator key %s", admin.ErrNotFound, c.OperatorKeyID)
		}
		n.OperatorSet = slices.Delete(n.OperatorSet, i, i+1)
	case intel.OpCreateJoinToken:
		n.TokenSet = append(n.TokenSet, admin.JoinTokenInfo{ID: intel.JoinTokenID(ed25519.PublicKey(c.TokenKey)),
			Uses: c.TokenUses, Expires: c.Header.Issued.Add(c.TokenTTL()).UTC(), CreatedBy: keyID})
	case intel.OpSetFeedPolicy, intel.OpRemoveFeedPolicy, intel.OpWarninglistAdd, intel.OpWarninglistRemove:
		return n.applyFeed(c)
	case intel.OpSetZone, intel.OpRemoveZone, intel.OpSetFlow, intel.OpRemoveFlow, intel.OpQuarantine, intel.OpRelease:
		return n.applySegment(c, keyID)
	default:
		return fmt.Errorf("%w: op %s", admin.ErrInvalid, c.Op)
	}
	return nil
}

// OperatorKey returns a deterministic operator key derived from name, so
// that tests and golden files see the same key in every run.
func OperatorKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("meshward test operator key\x00" + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// Signed builds c's header for mesh (a random nonce, issued now,
// expiring in five minutes), signs c with priv and fails the test if it
// cannot.
func Signed(t testing.TB, priv ed25519.PrivateKey, mesh string, now time.Time, c intel.OperatorCommand) intel.OperatorSigned {
	t.Helper()
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	c.Header = intel.OperatorHeader{Mesh: mesh, Nonce: hex.EncodeToString(nonce), Issued: now, Expires: now.Add(5 * time.Minute)}
	s, err := intel.SignOperatorCommand(priv, c)
	if err != nil {
		t.Fatalf("sign %s: %v", c.Op, err)
	}
	return s
}
