package certify

import (
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkLink is the chain's cost per entry on a voter (a 256-byte
// command).
func BenchmarkLink(b *testing.B) {
	e := Entry{Index: 10, Term: 2, Prev: 9, Type: raft.LogCommand, Data: make([]byte, 256)}
	h := GenesisHash
	b.SetBytes(int64(len(e.Data)))
	for b.Loop() {
		h = Link(h, &e)
	}
}

// BenchmarkCertVerify is one certificate's signature check.
func BenchmarkCertVerify(b *testing.B) {
	c := newChain()
	c.commands(1)
	ct := c.cert(b, kA, c.last())
	for b.Loop() {
		if !ct.Verify() {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkEdgeApply is the edge's throughput: 256-byte entries, in
// order, with two of three voters certifying every 128th entry, all
// checks and the chain recomputed; reported as entries/s.
func BenchmarkEdgeApply(b *testing.B) {
	const n, every = 4096, 128
	c := newChain()
	for i := range n {
		c.add(raft.LogCommand, make([]byte, 256), uint64(i%2))
	}
	var certs [][]Cert
	for p := every - 1; p < n; p += every {
		certs = append(certs, []Cert{c.cert(b, kA, c.entries[p].Index), c.cert(b, kB, c.entries[p].Index)})
	}
	voters := votersOf(kA, kB, kC)
	applied := 0
	b.ResetTimer()
	for b.Loop() {
		e, err := NewEdge(Config{Mesh: testMesh, Anchor: Anchor{Hash: GenesisHash, Voters: voters},
			Apply: func(es []Entry) error { applied += len(es); return nil }})
		if err != nil {
			b.Fatal(err)
		}
		for i, en := range c.entries {
			if err := e.AddEntry(en); err != nil {
				b.Fatal(err)
			}
			if (i+1)%every == 0 {
				for _, ct := range certs[i/every] {
					if err := e.AddCert(ct); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		if e.Applied().Index != c.last() {
			b.Fatalf("applied %d", e.Applied().Index)
		}
	}
	b.ReportMetric(float64(applied)/b.Elapsed().Seconds(), "entries/s")
}
