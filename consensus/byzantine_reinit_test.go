package consensus

import (
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// A member proposes a second initialisation entry naming its own key as
// the only admin operator and a mesh ID of its choosing: it would take the
// mesh over. It is refused, counted, and changes nothing.
func TestByzantineReinitialisation(t *testing.T) {
	nodes := byzantineCluster(t)
	attackerKey := seededKey("re-initialiser")
	pub := attackerKey.Public().(ed25519PublicKey)
	rules := nodes[0].c.Rules()
	rules.MinNodes = 1
	attack(t, nodes, Command{Type: CmdInit, At: time.Now().UTC(), Init: &Init{
		MeshID: "ffeeddccbbaa99887766554433221100",
		Operators: []Operator{{KeyID: intel.OperatorKeyID(pub), Key: pub, Role: intel.OperatorAdmin,
			Name: "mine", AddedBy: "bootstrap"}},
		Rules: rules,
	}}, "already_initialised")
}
