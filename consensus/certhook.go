package consensus

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/meshward/meshward/consensus/certify"
)

// The certified chain: every entry the FSM applies (commands and
// configuration changes, which raft hands a BatchingFSM through
// ApplyBatch, in index order) extends a hash chain (package certify), so
// that a voter can sign its head and an edge, which is no raft peer,
// can check that the entries it is given are the ones the voters
// applied. The chain's head travels in the FSM snapshot; a node restored
// from a snapshot without it does not know its chain (ChainHead reports
// that) until it restores one that has it.

// Bounds of the recent entries kept to serve edges that fall behind;
// beyond them an edge catches up from a certified snapshot. The bytes
// match the raft log cache's (logcache.go), whose entries these share.
const (
	chainRecentEntries = 4096
	chainRecentBytes   = logCacheBytes
)

// chainState is the chain head as a snapshot holds it.
type chainState struct {
	Index  uint64   `json:"index"`
	Term   uint64   `json:"term"`
	Hash   []byte   `json:"hash"`
	Voters []string `json:"voters,omitempty"`
	// Servers are every server of the last configuration entry, voters
	// and standbys: what an edge, which is in no raft configuration,
	// knows of the servers (absent from older snapshots).
	Servers []string `json:"servers,omitempty"`
}

// certChain is the fsm's chain. The fsm owns it: extend and restore run
// under its write lock, the readers under its read lock. The zero value
// is the chain's start.
type certChain struct {
	// maxEntries and maxBytes bound recent (zero: chainRecentEntries,
	// chainRecentBytes); restore keeps them.
	maxEntries, maxBytes int

	head certify.Anchor // Hash is zero until the first entry
	// inForce is the voter set in force at head.Index: the set after
	// the entry before it (head.Voters is the set after the head). A
	// server certifies its head only when it is in it, since an edge
	// counts a certificate only from a voter at its index. After a
	// restore it is head.Voters (the snapshot keeps no more): at worst a
	// server then certifies one head an edge refuses, or waits for the
	// next entry.
	inForce certify.Voters
	servers []string // every server of the last configuration entry, sorted
	unknown bool     // restored from a snapshot without the chain
	recent  []certify.Entry
	hashes  []certify.Hash // the chain hash at each recent entry
	bytes   int
}

// extend links the entries of one ApplyBatch that the FSM applies. The
// entries' data is kept by reference: raft never changes it.
func (c *certChain) extend(logs []*raft.Log) {
	if c.unknown {
		return
	}
	for _, l := range logs {
		if !certify.Chained(l.Type) {
			continue
		}
		prev := c.head.Hash
		if c.head.Index == 0 {
			prev = certify.GenesisHash
		}
		e := certify.Entry{Index: l.Index, Term: l.Term, Prev: c.head.Index, Type: l.Type, Data: l.Data}
		c.inForce = c.head.Voters
		c.head.Hash = certify.Link(prev, &e)
		c.head.Index, c.head.Term = l.Index, l.Term
		if l.Type == raft.LogConfiguration {
			if v, err := certify.ConfigVoters(l.Data); err == nil {
				c.head.Voters = v
				c.servers = configServers(l.Data)
			}
		}
		c.recent = append(c.recent, e)
		c.hashes = append(c.hashes, c.head.Hash)
		c.bytes += len(e.Data)
	}
	c.trim(cmp.Or(c.maxEntries, chainRecentEntries), cmp.Or(c.maxBytes, chainRecentBytes))
}

// skip is how many of logs, in index order, the chain holds already
// (at or below its head). An edge promoted to server applied them
// through its certify.Edge; raft, which does not know that, may hand
// them over again, and they must not be applied twice.
func (c *certChain) skip(logs []*raft.Log) int {
	if c.unknown || c.head.Index == 0 {
		return 0
	}
	n := 0
	for n < len(logs) && logs[n].Index <= c.head.Index {
		n++
	}
	return n
}

// trim drops the oldest recent entries beyond maxEntries or maxBytes (the
// newest is always kept); by entries only once a quarter more piled up,
// so that the copy is amortised.
func (c *certChain) trim(maxEntries, maxBytes int) {
	n := len(c.recent)
	if n <= maxEntries+maxEntries/4 && c.bytes <= maxBytes {
		return
	}
	drop := max(n-maxEntries, 0)
	for _, e := range c.recent[:drop] {
		c.bytes -= len(e.Data)
	}
	for c.bytes > maxBytes && drop < n-1 {
		c.bytes -= len(c.recent[drop].Data)
		drop++
	}
	c.recent = slices.Delete(c.recent, 0, drop)
	c.hashes = slices.Delete(c.hashes, 0, drop)
}

// hashAt is the chain hash at index i, when i is the head or a recent
// entry. Caller holds the fsm's lock.
func (c *certChain) hashAt(i uint64) (certify.Hash, bool) {
	if c.unknown || i == 0 {
		return certify.Hash{}, false
	}
	if i == c.head.Index {
		return c.head.Hash, true
	}
	k, ok := slices.BinarySearchFunc(c.recent, i, func(e certify.Entry, i uint64) int {
		return cmp.Compare(e.Index, i)
	})
	if !ok || k >= len(c.hashes) {
		return certify.Hash{}, false
	}
	return c.hashes[k], true
}

// state is the head for a snapshot; nil when unknown.
func (c *certChain) state() *chainState {
	if c.unknown {
		return nil
	}
	return &chainState{Index: c.head.Index, Term: c.head.Term, Hash: slices.Clone(c.head.Hash[:]), Voters: slices.Clone(c.head.Voters),
		Servers: slices.Clone(c.servers)}
}

// restore sets the head from a snapshot's. Without one (a snapshot from
// before the chain) the chain is unknown on this node: it cannot be
// rebuilt from the state, and a chain restarted here would be signed
// wrong.
func (c *certChain) restore(st *chainState) {
	*c = certChain{maxEntries: c.maxEntries, maxBytes: c.maxBytes}
	if st == nil || len(st.Hash) != len(certify.Hash{}) {
		c.unknown = true
		return
	}
	c.head = certify.Anchor{Index: st.Index, Term: st.Term, Voters: certify.NewVoters(st.Voters...)}
	c.inForce = c.head.Voters
	c.servers = certify.NewVoters(st.Servers...)
	copy(c.head.Hash[:], st.Hash)
}

// Consensus is what a certify.Publisher needs of a server.
var _ certify.Source = (*Consensus)(nil)

// ErrChainUnknown is returned when this node cannot say its chain: it
// was restored from a snapshot older than the chain, or applied nothing.
var ErrChainUnknown = errors.New("the certified chain is not known on this node")

// ChainHead returns the chain's head: the last entry the FSM applied,
// the chain hash there and the voter set after it.
func (c *Consensus) ChainHead() (certify.Anchor, error) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	ch := &c.fsm.chain
	if ch.unknown || ch.head.Index == 0 {
		return certify.Anchor{}, ErrChainUnknown
	}
	a := ch.head
	a.Voters = slices.Clone(a.Voters)
	return a, nil
}

// ChainEntries returns up to max chain entries from index from on, from
// the recent entries this node keeps; ok is false when entries from on
// are no longer kept (the caller catches up from a certified snapshot).
// The entries' data must not be changed.
func (c *Consensus) ChainEntries(from uint64, max int) (entries []certify.Entry, ok bool) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.chain.entries(from, max)
}

// entries is ChainEntries. Caller holds the fsm's lock.
func (c *certChain) entries(from uint64, max int) ([]certify.Entry, bool) {
	if c.unknown {
		return nil, false
	}
	r := c.recent
	if len(r) == 0 {
		return nil, from > c.head.Index
	}
	if r[0].Prev > 0 && from <= r[0].Prev {
		return nil, false // trimmed
	}
	i, _ := slices.BinarySearchFunc(r, from, func(e certify.Entry, i uint64) int {
		return cmp.Compare(e.Index, i)
	})
	return slices.Clone(r[i:min(i+max, len(r))]), true
}

// nodeKey is this node's ed25519 key.
func (c *Consensus) nodeKey() (ed25519.PrivateKey, error) {
	priv := c.h.Peerstore().PrivKey(c.h.ID())
	if priv == nil {
		return nil, errors.New("the host holds no private key")
	}
	raw, err := priv.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("the node key is not ed25519 (%d bytes, %v)", len(raw), err)
	}
	return ed25519.PrivateKey(raw), nil
}

// ErrNotVoterAtHead is returned by CertifyHead on a server that is not a
// voter in the set in force at its head (a standby, a voter demoted
// before it, or one promoted by the head itself): an edge would refuse
// its certificate (not_voter), so it signs the next head it is a voter
// at instead.
var ErrNotVoterAtHead = errors.New("this node is not a voter at the chain head")

// CertifyHead signs the chain head with the node key. Each call signs:
// callers sign the latest head every few milliseconds at most (a
// certificate vouches for every entry before it).
func (c *Consensus) CertifyHead() (certify.Cert, error) {
	head, err := c.ChainHead()
	if err != nil {
		return certify.Cert{}, fmt.Errorf("certify head: %w", err)
	}
	c.fsm.mu.RLock()
	voter := c.fsm.chain.head.Index == head.Index && c.fsm.chain.inForce.Contains(c.cfg.LocalID)
	c.fsm.mu.RUnlock()
	if !voter {
		return certify.Cert{}, fmt.Errorf("certify head %d: %w", head.Index, ErrNotVoterAtHead)
	}
	mesh := c.MeshID()
	if mesh == "" {
		return certify.Cert{}, errors.New("certify head: the mesh is not initialised")
	}
	key, err := c.nodeKey()
	if err != nil {
		return certify.Cert{}, fmt.Errorf("certify head: %w", err)
	}
	return certify.SignCert(key, mesh, head.Index, head.Term, head.Hash)
}

// CertifiedSnapshot returns the FSM state at the chain head as snapshot
// bytes, and their manifest signed by this node. Voters at the same head
// produce the same bytes, so their signatures add up (Manifest.Sigs).
func (c *Consensus) CertifiedSnapshot() (certify.Manifest, []byte, error) {
	s, err := c.fsm.Snapshot()
	if err != nil {
		return certify.Manifest{}, nil, fmt.Errorf("certified snapshot: %w", err)
	}
	fs := s.(*fsmSnapshot)
	defer fs.Release()
	if fs.chain == nil || fs.chain.Index == 0 {
		return certify.Manifest{}, nil, fmt.Errorf("certified snapshot: %w", ErrChainUnknown)
	}
	var buf bytes.Buffer
	if err := fs.write(&buf); err != nil {
		return certify.Manifest{}, nil, fmt.Errorf("certified snapshot: %w", err)
	}
	var h certify.Hash
	copy(h[:], fs.chain.Hash)
	m := certify.NewManifest(fs.meshID, fs.chain.Index, fs.chain.Term, h, certify.NewVoters(fs.chain.Voters...), buf.Bytes())
	key, err := c.nodeKey()
	if err != nil {
		return certify.Manifest{}, nil, fmt.Errorf("certified snapshot: %w", err)
	}
	if err := m.Sign(key); err != nil {
		return certify.Manifest{}, nil, fmt.Errorf("certified snapshot: %w", err)
	}
	return m, buf.Bytes(), nil
}

// configServers are the IDs of every server of a configuration entry's
// data, sorted; nil if it does not decode (raft's decoder panics on bad
// input).
func configServers(data []byte) (ids []string) {
	defer func() {
		if recover() != nil {
			ids = nil
		}
	}()
	for _, s := range raft.DecodeConfiguration(data).Servers {
		ids = append(ids, string(s.ID))
	}
	return certify.NewVoters(ids...)
}

// chainServers returns the voters and every server (voters and
// standbys) of the last configuration entry the FSM applied.
func (c *Consensus) chainServers() (voters, servers []string) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return slices.Clone(c.fsm.chain.head.Voters), slices.Clone(c.fsm.chain.servers)
}
