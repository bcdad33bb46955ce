package consensus

import (
	"testing"
	"time"
)

// A member removes another without an operator's signature: the raw
// removal, and a leave in the victim's name signed by the attacker.
func TestByzantineRemoveAnotherMember(t *testing.T) {
	nodes := byzantineCluster(t)
	now := time.Now().UTC()
	victim := nodes[2]
	attack(t, nodes, Command{Type: CmdRemoveMember, At: now, Member: &Member{ID: victim.id()}}, "unsigned")
	sig, err := nodes[1].key.Sign(LeaveMessage(nodes[0].c.MeshID(), victim.id(), now))
	if err != nil {
		t.Fatal(err)
	}
	attack(t, nodes, Command{Type: CmdLeave, At: now, Leave: &LeaveRequest{Node: victim.id(), Issued: now, Sig: sig}}, "bad_signature")
	// The victim's own leave, replayed long after it was signed.
	old := now.Add(-time.Hour)
	sig, err = victim.key.Sign(LeaveMessage(nodes[0].c.MeshID(), victim.id(), old))
	if err != nil {
		t.Fatal(err)
	}
	attack(t, nodes, Command{Type: CmdLeave, At: now, Leave: &LeaveRequest{Node: victim.id(), Issued: old, Sig: sig}}, "expired")
}
