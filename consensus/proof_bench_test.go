package consensus

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

// BenchmarkProofVerification measures what the FSM spends per automatic
// block on its proofs: k signed sightings opened, decoded and checked
// against the roster and the window, then the block merged (Apply of one
// entry, encoding excluded). cache=cold: the replica has seen none of the
// proofs, and verifies each signature; cache=warm: its verify cache holds
// them all (as after gossip, or the leader's early check).
func BenchmarkProofVerification(b *testing.B) {
	for _, k := range []int{2, 5} {
		for _, warm := range []bool{false, true} {
			name := fmt.Sprintf("k=%d/cache=cold", k)
			if warm {
				name = fmt.Sprintf("k=%d/cache=warm", k)
			}
			b.Run(name, func(b *testing.B) { benchmarkProofVerification(b, k, warm) })
		}
	}
}

func benchmarkProofVerification(b *testing.B, k int, warm bool) {
	f := newFSM(nil)
	init := testInit()
	init.Rules.MinNodes = k
	index := uint64(0)
	apply := func(c Command) any {
		data, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		index++
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	}
	if res := apply(Command{Type: CmdInit, At: t0, Init: init}); res != nil {
		b.Fatal(res)
	}
	if res := apply(createTokenCmd(b, t0, 1000)); res != nil {
		b.Fatal(res)
	}
	keys := make([]ed25519.PrivateKey, k)
	for i := range keys {
		keys[i] = seededKey(fmt.Sprintf("bench-%d", i))
		id := intel.NodeID(keys[i].Public().(ed25519.PublicKey))
		if res := apply(joinAdmit(id, t0)); res != nil {
			b.Fatal(res)
		}
	}
	ind := mustIndicator(b, "203.0.113.7")
	var proofs [][]byte
	for i, key := range keys {
		proofs = append(proofs, sealSighting(b, key, uint64(i+1), ind, t0))
	}
	data, err := autoBlock(b, "203.0.113.7", t0, time.Hour, proofs...).Encode()
	if err != nil {
		b.Fatal(err)
	}
	if warm {
		f.verify = intel.NewVerifyCache(intel.DefaultVerifyCacheSize)
		for _, p := range proofs {
			if _, err := f.verify.Open(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		index++
		if res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}); res != nil {
			b.Fatal(res)
		}
	}
}
