package certify

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/intel"
)

const testMesh = "0123456789abcdef0123456789abcdef"

// key is a deterministic voter key.
func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("certify test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func idOf(k ed25519.PrivateKey) string { return intel.NodeID(k.Public().(ed25519.PublicKey)) }

func votersOf(keys ...ed25519.PrivateKey) Voters {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = idOf(k)
	}
	return NewVoters(ids...)
}

// configData is a raft configuration entry naming keys as voters.
func configData(keys ...ed25519.PrivateKey) []byte {
	var cfg raft.Configuration
	for i, k := range keys {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(idOf(k)), Address: raft.ServerAddress(fmt.Sprint(i))})
	}
	return raft.EncodeConfiguration(cfg)
}

// chain builds a chain as the voters' FSMs would: entries with holes
// (indexes the FSM never sees) between some of them.
type chain struct {
	entries []Entry
	hashes  []Hash
	term    uint64
	next    uint64
}

func newChain() *chain { return &chain{term: 1, next: 1} }

func (c *chain) head() (uint64, Hash) {
	if len(c.entries) == 0 {
		return 0, GenesisHash
	}
	return c.entries[len(c.entries)-1].Index, c.hashes[len(c.hashes)-1]
}

// add appends an entry after skipping hole indexes; it returns its index.
func (c *chain) add(t raft.LogType, data []byte, hole uint64) uint64 {
	c.next += hole
	prev, h := c.head()
	e := Entry{Index: c.next, Term: c.term, Prev: prev, Type: t, Data: data}
	c.entries = append(c.entries, e)
	c.hashes = append(c.hashes, Link(h, &e))
	c.next++
	return e.Index
}

// commands appends n commands, every third after a hole.
func (c *chain) commands(n int) {
	for i := range n {
		c.add(raft.LogCommand, fmt.Appendf(nil, "command %d", len(c.entries)), uint64(i%3/2))
	}
}

// pos is the position of the entry at index.
func (c *chain) pos(tb testing.TB, index uint64) int {
	for i, e := range c.entries {
		if e.Index == index {
			return i
		}
	}
	tb.Fatalf("no entry at %d", index)
	return -1
}

func (c *chain) last() uint64 { i, _ := c.head(); return i }

// cert is k's certificate for the chain at index.
func (c *chain) cert(tb testing.TB, k ed25519.PrivateKey, index uint64) Cert {
	tb.Helper()
	p := c.pos(tb, index)
	ct, err := SignCert(k, testMesh, index, c.entries[p].Term, c.hashes[p])
	if err != nil {
		tb.Fatal(err)
	}
	return ct
}

// sink collects what an edge applies.
type sink struct{ got []Entry }

func (s *sink) apply(es []Entry) error {
	for _, e := range es {
		if n := len(s.got); n > 0 && s.got[n-1].Index >= e.Index {
			return fmt.Errorf("entry %d applied after %d", e.Index, s.got[n-1].Index)
		}
		s.got = append(s.got, e)
	}
	return nil
}

func newEdge(tb testing.TB, voters Voters, opt func(*Config)) (*Edge, *sink) {
	tb.Helper()
	s := &sink{}
	cfg := Config{Mesh: testMesh, Anchor: Anchor{Hash: GenesisHash, Voters: voters}, Apply: s.apply}
	if opt != nil {
		opt(&cfg)
	}
	e, err := NewEdge(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return e, s
}

// feed offers all entries of c (in order) and ignores refusals.
func feed(e *Edge, entries []Entry) {
	for _, en := range entries {
		_ = e.AddEntry(en)
	}
}

// wantReason fails unless err is a refusal with reason.
func wantReason(tb testing.TB, err error, reason string) {
	tb.Helper()
	if got := ReasonOf(err); got != reason {
		tb.Fatalf("err = %v (reason %q), want reason %q", err, got, reason)
	}
}

// wantApplied fails unless the edge applied exactly up to index.
func wantApplied(tb testing.TB, e *Edge, s *sink, c *chain, index uint64) {
	tb.Helper()
	if got := e.Applied().Index; got != index {
		tb.Fatalf("applied up to %d, want %d (counts %v)", got, index, e.Counts())
	}
	n := 0
	if index > 0 {
		n = c.pos(tb, index) + 1
	}
	if len(s.got) != n {
		tb.Fatalf("%d entries applied, want %d", len(s.got), n)
	}
	for i := range n {
		if !s.got[i].same(&c.entries[i]) {
			tb.Fatalf("entry %d applied is %+v, want %+v", i, s.got[i], c.entries[i])
		}
	}
}
