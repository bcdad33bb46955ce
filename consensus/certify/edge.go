package certify

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// Anchor is a point of the chain an edge trusts: the last chain entry
// applied, the chain hash there and the voter set in force after it.
type Anchor struct {
	Index  uint64 // 0: nothing applied yet
	Term   uint64
	Hash   Hash // GenesisHash when Index is 0
	Voters Voters
}

// Genesis is the anchor of a mesh nothing of which is applied yet: the
// chain's start and its founder, the only voter until the first
// configuration entry (raft's bootstrap configuration, index 1). An edge
// learns the founder's node ID out of band, like the mesh ID.
func Genesis(founder string) Anchor {
	return Anchor{Hash: GenesisHash, Voters: NewVoters(founder)}
}

// Config configures an Edge. Mesh, Anchor and Apply are required.
type Config struct {
	Mesh   string
	Anchor Anchor
	// Apply applies certified entries, in chain order, under the edge's
	// lock. An error halts the edge: its state is then unknown.
	Apply func([]Entry) error
	// Restore replaces the state with certified snapshot bytes (Install);
	// nil refuses snapshots. An error halts the edge.
	Restore func(state []byte) error

	Window            uint64 // entries and certificates beyond applied+Window are refused (default 1<<16)
	MaxPending        int    // entries held (default 4096)
	MaxPendingBytes   int    // their data bytes (default 64 MiB)
	MaxCertsPerSigner int    // certificates held per voter (default 16)
	MaxCerts          int    // certificates held in all (default 4096)
	MaxEvidence       int    // equivocation pairs kept (default 16)
	// MaxParked bounds the certificates of signers that are no voter in
	// any set known yet, held (the latest per signer) until the entries
	// that may make them voters arrive (default 2×MaxVoters).
	MaxParked int
}

func (c *Config) withDefaults() error {
	if c.Mesh == "" || len(c.Mesh) > MaxMeshID {
		return fmt.Errorf("edge config: Mesh = %q: want 1 to %d bytes", c.Mesh, MaxMeshID)
	}
	if c.Apply == nil {
		return errors.New("edge config: Apply is required")
	}
	if len(c.Anchor.Voters) == 0 || !NewVoters(c.Anchor.Voters...).Equal(c.Anchor.Voters) {
		return errors.New("edge config: Anchor.Voters: want a non-empty sorted set (NewVoters)")
	}
	if c.Anchor.Index == 0 && c.Anchor.Hash != GenesisHash {
		return errors.New("edge config: Anchor.Hash: index 0 needs GenesisHash")
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	if c.Window == 0 {
		c.Window = 1 << 16
	}
	def(&c.MaxPending, 4096)
	def(&c.MaxPendingBytes, 64<<20)
	def(&c.MaxCertsPerSigner, 16)
	def(&c.MaxCerts, 4096)
	def(&c.MaxEvidence, 16)
	def(&c.MaxParked, 2*MaxVoters)
	return nil
}

// Gap is a run of entries an edge needs and does not hold: every chain
// entry with From <= index <= To.
type Gap struct{ From, To uint64 }

// Equivocation is evidence that a voter lied: two certificates for one
// index with different hashes (A is the one held first).
type Equivocation struct{ A, B Cert }

// held is an entry waiting to be applied.
type held struct {
	e      Entry
	voters Voters // a configuration entry's voters
	hash   Hash   // the chain hash after e; valid while linked
}

// signed is a certificate waiting for its entries.
type signed struct {
	c       Cert
	checked bool // a mismatch already counted
}

// Edge applies the entries a majority of voters certify, in chain order.
// It takes input from untrusted senders in any order; it holds bounded
// buffers and counts every refusal and drop by reason. Safe for
// concurrent use; it runs no goroutines (Apply and Restore run in the
// caller's).
type Edge struct {
	mu      sync.Mutex
	cfg     Config
	applied Anchor
	pending []*held // by index
	linked  int     // pending[:linked] chain on from applied, hashes computed
	bytes   int
	certs   map[string][]*signed // by signer node ID, by index
	ncerts  int
	parked  map[string]Cert   // by signer: certificates of signers not known to be voters yet
	ids     map[string]string // signer key -> node ID
	evid    []Equivocation
	counts  map[string]uint64
	entries uint64 // entries applied
	halted  error
}

// NewEdge returns an edge at cfg.Anchor.
func NewEdge(cfg Config) (*Edge, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return &Edge{cfg: cfg, applied: cfg.Anchor, certs: map[string][]*signed{}, parked: map[string]Cert{},
		ids: map[string]string{}, counts: map[string]uint64{}}, nil
}

func (e *Edge) refuse(reason string, index uint64, format string, args ...any) error {
	e.counts[reason]++
	return &Refusal{Reason: reason, Index: index, Detail: fmt.Sprintf(format, args...)}
}

// Applied is the anchor the edge stands on: the last entry applied.
func (e *Edge) Applied() Anchor {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.applied
	a.Voters = slices.Clone(a.Voters)
	return a
}

// Counts returns the refusals and drops so far, by reason.
func (e *Edge) Counts() map[string]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.counts)
}

// Evidence returns the equivocations seen (at most MaxEvidence).
func (e *Edge) Evidence() []Equivocation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evid)
}

// Stats are the edge's gauges.
type Stats struct {
	Applied  uint64 // index of the last entry applied
	Entries  uint64 // entries applied since the edge started
	Pending  int    // entries waiting
	Certs    int    // certificates waiting
	Evidence int    // equivocations held
}

// Stats returns the edge's gauges.
func (e *Edge) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Applied: e.applied.Index, Entries: e.entries, Pending: len(e.pending), Certs: e.ncerts + len(e.parked), Evidence: len(e.evid)}
}

// Pending is how many entries wait.
func (e *Edge) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

// Err is the error that halted the edge, or nil.
func (e *Edge) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.halted
}

// NextGap reports the first run of entries the edge needs to go on: a
// hole before an entry it holds, or the entries up to the highest index
// a voter has certified. ok is false when nothing is known to be missing.
func (e *Edge) NextGap() (g Gap, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	top := e.applied.Index
	if e.linked > 0 {
		top = e.pending[e.linked-1].e.Index
	}
	if e.linked < len(e.pending) {
		return Gap{From: top + 1, To: e.pending[e.linked].e.Prev}, true
	}
	var hi uint64
	for _, cs := range e.certs {
		if n := len(cs); n > 0 && cs[n-1].c.Index > hi {
			hi = cs[n-1].c.Index
		}
	}
	if hi > top {
		return Gap{From: top + 1, To: hi}, true
	}
	return Gap{}, false
}

// AddEntry offers one entry. It is held until certified, then applied;
// the error says why it was refused (a *Refusal), or why applying failed.
func (e *Edge) AddEntry(en Entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.halted != nil {
		return e.refuse(ReasonHalted, en.Index, "%v", e.halted)
	}
	if err := en.check(); err != nil {
		return e.refuse(ReasonMalformed, en.Index, "%v", err)
	}
	if en.Index <= e.applied.Index {
		return e.refuse(ReasonOld, en.Index, "applied up to %d", e.applied.Index)
	}
	if en.Index-e.applied.Index > e.cfg.Window {
		return e.refuse(ReasonTooFarAhead, en.Index, "applied up to %d, window %d: catch up from a snapshot", e.applied.Index, e.cfg.Window)
	}
	pos, found := e.find(en.Index)
	if found {
		if e.pending[pos].e.same(&en) {
			return e.refuse(ReasonDuplicate, en.Index, "entry already held")
		}
		return e.refuse(ReasonConflictingEntry, en.Index, "another entry for this index is held")
	}
	h := &held{e: en}
	if en.Type == raft.LogConfiguration {
		v, err := ConfigVoters(en.Data)
		if err != nil {
			return e.refuse(ReasonMalformed, en.Index, "%v", err)
		}
		h.voters = v
	}
	h.e.Data = slices.Clone(en.Data)
	for len(e.pending) >= e.cfg.MaxPending || e.bytes+len(en.Data) > e.cfg.MaxPendingBytes {
		// Keep the entries nearest to applied: drop the highest, or the
		// newcomer if it is the highest.
		last := len(e.pending) - 1
		if last < 0 || pos > last {
			return e.refuse(ReasonBufferFull, en.Index, "%d entries, %d bytes held", len(e.pending), e.bytes)
		}
		e.counts[ReasonBufferFull]++
		e.removeAt(last)
	}
	e.pending = slices.Insert(e.pending, pos, h)
	e.bytes += len(h.e.Data)
	if pos < e.linked {
		e.linked = pos
	}
	return e.advance()
}

// AddCert offers one voter's certificate. A certificate that conflicts
// with another for the same index is kept as evidence (Evidence) and
// reported as a *Refusal with ReasonEquivocation; it still counts for its
// signer where it matches the chain.
func (e *Edge) AddCert(c Cert) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.halted != nil {
		return e.refuse(ReasonHalted, c.Index, "%v", e.halted)
	}
	if c.Mesh != e.cfg.Mesh {
		return e.refuse(ReasonWrongMesh, c.Index, "certificate for mesh %q, this is %q", c.Mesh, e.cfg.Mesh)
	}
	if c.Index <= e.applied.Index {
		return e.refuse(ReasonOld, c.Index, "applied up to %d", e.applied.Index)
	}
	if c.Index-e.applied.Index > e.cfg.Window {
		return e.refuse(ReasonTooFarAhead, c.Index, "applied up to %d, window %d: catch up from a snapshot", e.applied.Index, e.cfg.Window)
	}
	id := e.nodeID(c.Signer)
	if id == "" {
		return e.refuse(ReasonBadSignature, c.Index, "signer key of %d bytes", len(c.Signer))
	}
	voter, known := e.voterAt(id, c.Index)
	if !voter && known {
		return e.refuse(ReasonNotVoter, c.Index, "signer %s is not a voter at this index", id)
	}
	park := !voter && !e.mayBeVoter(id, c.Index)
	// A certificate already held is refused before its signature is
	// checked, so that replays cost no verification.
	var conflict *Cert
	for sid, cs := range e.certs {
		for _, s := range cs {
			if s.c.Index != c.Index {
				continue
			}
			if s.c.Hash == c.Hash && s.c.Term == c.Term {
				if sid == id && string(s.c.Sig) == string(c.Sig) {
					return e.refuse(ReasonDuplicate, c.Index, "certificate of %s already held", id)
				}
				continue
			}
			if conflict == nil {
				conflict = &s.c
			}
		}
	}
	if p, ok := e.parked[id]; ok && p.Index == c.Index && string(p.Sig) == string(c.Sig) {
		return e.refuse(ReasonDuplicate, c.Index, "certificate of %s already waits", id)
	}
	if !c.Verify() {
		return e.refuse(ReasonBadSignature, c.Index, "signature of %s does not verify", id)
	}
	c.Signer, c.Sig = slices.Clone(c.Signer), slices.Clone(c.Sig)
	if park {
		// Entries before its index are missing: whether the signer is
		// a voter there will be known once they arrive.
		if p, ok := e.parked[id]; ok && p.Index >= c.Index {
			return e.refuse(ReasonOld, c.Index, "a certificate of %s for %d waits already", id, p.Index)
		}
		if _, ok := e.parked[id]; !ok && len(e.parked) >= e.cfg.MaxParked {
			return e.refuse(ReasonBufferFull, c.Index, "%d certificates of unknown signers wait", len(e.parked))
		}
		e.parked[id] = c
		return nil
	}
	err := e.store(c, id, conflict)
	if aerr := e.advance(); aerr != nil {
		return aerr
	}
	return err
}

// store keeps a verified certificate of voter id; conflict is another
// voter's certificate for the same index with another hash, if any.
func (e *Edge) store(c Cert, id string, conflict *Cert) error {
	for _, s := range e.certs[id] {
		if s.c.Index == c.Index && s.c.Hash == c.Hash && s.c.Term == c.Term {
			// ed25519 signatures are deterministic: another valid
			// signature over the same statement is the same statement.
			return e.refuse(ReasonDuplicate, c.Index, "certificate of %s already held", id)
		}
	}
	if e.ncerts >= e.cfg.MaxCerts {
		return e.refuse(ReasonBufferFull, c.Index, "%d certificates held", e.ncerts)
	}
	cs := e.certs[id]
	i := sort.Search(len(cs), func(i int) bool { return cs[i].c.Index > c.Index })
	cs = slices.Insert(cs, i, &signed{c: c})
	e.ncerts++
	if len(cs) > e.cfg.MaxCertsPerSigner {
		cs = cs[1:] // the oldest: a later one vouches for more
		e.ncerts--
		e.counts[ReasonCertEvicted]++
	}
	e.certs[id] = cs
	if conflict != nil {
		if len(e.evid) < e.cfg.MaxEvidence {
			e.evid = append(e.evid, Equivocation{A: *conflict, B: c})
		}
		return e.refuse(ReasonEquivocation, c.Index, "%s signed hash %s, %s signed %s", conflict.SignerID(), conflict.Hash, id, c.Hash)
	}
	return nil
}

// conflictWith is a held certificate of another hash for c's index.
func (e *Edge) conflictWith(c *Cert) *Cert {
	for _, cs := range e.certs {
		for _, s := range cs {
			if s.c.Index == c.Index && (s.c.Hash != c.Hash || s.c.Term != c.Term) {
				return &s.c
			}
		}
	}
	return nil
}

// unpark moves the waiting certificates whose signer's standing is now
// known: to the held ones if a voter, else refused and counted.
func (e *Edge) unpark() {
	for id, c := range e.parked {
		if c.Index <= e.applied.Index {
			delete(e.parked, id)
			e.counts[ReasonOld]++
			continue
		}
		voter, known := e.voterAt(id, c.Index)
		if !known && !e.mayBeVoter(id, c.Index) {
			continue
		}
		delete(e.parked, id)
		if !voter && known {
			e.counts[ReasonNotVoter]++
			continue
		}
		_ = e.store(c, id, e.conflictWith(&c)) // counted there
	}
}

// Install replaces the edge's state with a certified snapshot: m must be
// signed by a majority of its voter set and by a majority of the voters
// the edge trusts now, and state must match its hash. The edge then
// continues from m.Index+1 with the entries it holds beyond.
func (e *Edge) Install(m Manifest, state []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.halted != nil {
		return e.refuse(ReasonHalted, m.Index, "%v", e.halted)
	}
	if e.cfg.Restore == nil {
		return errors.New("install snapshot: the edge has no Restore")
	}
	if m.Mesh != e.cfg.Mesh {
		return e.refuse(ReasonWrongMesh, m.Index, "manifest for mesh %q, this is %q", m.Mesh, e.cfg.Mesh)
	}
	if m.Index <= e.applied.Index {
		return e.refuse(ReasonOld, m.Index, "applied up to %d", e.applied.Index)
	}
	body, err := m.body()
	if err != nil || !NewVoters(m.Voters...).Equal(m.Voters) {
		return e.refuse(ReasonMalformed, m.Index, "manifest: %v", err)
	}
	msg := append([]byte(ManifestDomain), body...)
	seen := map[string]bool{}
	newCount, oldCount := 0, 0
	for i, s := range m.Sigs {
		id := e.nodeID(s.Signer)
		if id == "" || len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(s.Signer, msg, s.Sig) {
			return e.refuse(ReasonBadSignature, m.Index, "manifest signature %d does not verify", i)
		}
		if seen[id] {
			return e.refuse(ReasonDuplicateSigner, m.Index, "manifest signed twice by %s", id)
		}
		seen[id] = true
		inNew, inOld := m.Voters.Contains(id), e.applied.Voters.Contains(id)
		if !inNew && !inOld {
			return e.refuse(ReasonNotVoter, m.Index, "manifest signer %s is not a voter", id)
		}
		if inNew {
			newCount++
		}
		if inOld {
			oldCount++
		}
	}
	if newCount < m.Voters.Majority() || oldCount < e.applied.Voters.Majority() {
		return e.refuse(ReasonMinority, m.Index, "signed by %d of its %d voters and %d of the %d trusted", newCount, len(m.Voters), oldCount, len(e.applied.Voters))
	}
	if uint64(len(state)) != m.Size || sha256.Sum256(state) != m.State {
		return e.refuse(ReasonSnapshotHash, m.Index, "snapshot of %d bytes does not match the manifest (%d bytes)", len(state), m.Size)
	}
	if err := e.cfg.Restore(state); err != nil {
		e.halted = fmt.Errorf("restore snapshot at %d: %w", m.Index, err)
		return e.halted
	}
	e.applied = Anchor{Index: m.Index, Term: m.Term, Hash: m.Chain, Voters: slices.Clone(m.Voters)}
	e.dropApplied()
	e.linked = 0 // what was linked chained from the old anchor
	return e.advance()
}

// nodeID is the node ID of a signer key, cached.
func (e *Edge) nodeID(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	if id, ok := e.ids[string(pub)]; ok {
		return id
	}
	id := (&Cert{Signer: pub}).SignerID()
	if len(e.ids) >= 4*MaxVoters {
		clear(e.ids)
	}
	e.ids[string(pub)] = id
	return id
}

// voterAt reports whether id is a voter at index by the entries held:
// the set after the last configuration entry below index. known is false
// when entries below index may be missing (one of them could change the
// set).
func (e *Edge) voterAt(id string, index uint64) (voter, known bool) {
	set := e.applied.Voters
	for _, h := range e.pending[:e.linked] {
		if h.e.Index >= index {
			return set.Contains(id), true
		}
		if h.voters != nil {
			set = h.voters
		}
	}
	return set.Contains(id), false
}

// mayBeVoter reports whether id may be a voter at index: exactly, when
// no configuration entry is held between applied and index; otherwise
// when it is in the set in force or in one a held configuration names.
func (e *Edge) mayBeVoter(id string, index uint64) bool {
	if e.applied.Voters.Contains(id) {
		return true
	}
	for _, h := range e.pending {
		if h.e.Index >= index {
			break
		}
		if h.voters.Contains(id) {
			return true
		}
	}
	return false
}

// find is the position of index in pending, or where it would go.
func (e *Edge) find(index uint64) (int, bool) {
	return sort.Find(len(e.pending), func(i int) int {
		switch x := e.pending[i].e.Index; {
		case index < x:
			return -1
		case index > x:
			return 1
		}
		return 0
	})
}

func (e *Edge) removeAt(i int) {
	e.bytes -= len(e.pending[i].e.Data)
	e.pending = slices.Delete(e.pending, i, i+1)
	if i < e.linked {
		e.linked = i
	}
}

// discard drops pending[from:] (from <= linked), counting them.
func (e *Edge) discard(from int) {
	for _, h := range e.pending[from:] {
		e.bytes -= len(h.e.Data)
	}
	e.counts[ReasonDiscarded] += uint64(len(e.pending) - from)
	e.pending = e.pending[:from:from]
	if e.linked > from {
		e.linked = from
	}
}

// link extends pending[:linked] along the prev links. An entry whose prev
// contradicts the entries held before it (it skips one of them) means one
// of them is forged: both are dropped, counted, and fetched again; the
// refusal is returned.
func (e *Edge) link() error {
	var err error
	for e.linked < len(e.pending) {
		prevIdx, prevHash := e.applied.Index, e.applied.Hash
		if e.linked > 0 {
			p := e.pending[e.linked-1]
			prevIdx, prevHash = p.e.Index, p.hash
		}
		h := e.pending[e.linked]
		switch {
		case h.e.Prev == prevIdx:
			h.hash = Link(prevHash, &h.e)
			e.linked++
		case h.e.Prev < prevIdx:
			err = e.refuse(ReasonBadLink, h.e.Index, "prev %d skips the entry held at %d: both dropped", h.e.Prev, prevIdx)
			from, _ := e.find(h.e.Prev + 1)
			e.removeAt(e.linked)
			e.discard(from)
		default:
			return err // a gap: entries (prevIdx, h.e.Prev] are missing
		}
	}
	return err
}

// dropApplied forgets the entries and certificates at or below applied.
func (e *Edge) dropApplied() {
	i, _ := e.find(e.applied.Index + 1)
	for _, h := range e.pending[:i] {
		e.bytes -= len(h.e.Data)
	}
	e.pending = slices.Delete(e.pending, 0, i)
	e.linked = max(e.linked-i, 0)
	if i > 0 {
		e.linked = 0 // the hashes chained from the old anchor
	}
	for id, cs := range e.certs {
		j := sort.Search(len(cs), func(j int) bool { return cs[j].c.Index > e.applied.Index })
		e.ncerts -= j
		if j == len(cs) {
			delete(e.certs, id)
		} else {
			e.certs[id] = cs[j:]
		}
	}
}

// advance applies the longest certified prefix of the linked entries,
// segment by segment: a configuration entry ends a segment, since the
// entries after it are certified by the set it names.
func (e *Edge) advance() error {
	var refused error
	for {
		if err := e.link(); err != nil {
			refused = err
		}
		if len(e.parked) > 0 {
			e.unpark()
		}
		if e.linked == 0 {
			return refused
		}
		set := e.applied.Voters
		bound := e.linked - 1
		for i := range e.linked {
			if e.pending[i].e.Type == raft.LogConfiguration {
				bound = i
				break
			}
		}
		top := e.pending[e.linked-1].e.Index
		var best []int // per voter of set: the furthest position it vouches for
		disown := 0
		for _, id := range set {
			b, mismatch := -1, false
			for _, s := range e.certs[id] {
				if s.c.Index > top {
					break
				}
				pos, ok := e.find(s.c.Index)
				if ok && pos < e.linked && e.pending[pos].hash == s.c.Hash && e.pending[pos].e.Term == s.c.Term {
					b = max(b, pos)
					continue
				}
				// A voter signed an index the chain held has no entry
				// for, or another hash there.
				mismatch = true
				if !s.checked {
					s.checked = true
					e.counts[ReasonChainMismatch]++
				}
			}
			if mismatch && b < 0 {
				disown++
			}
			if b >= 0 {
				best = append(best, b)
			}
		}
		if disown >= set.Majority() {
			// A majority, so at least one honest voter, disowns the
			// entries held: some are forged. Drop them all and fetch
			// again.
			for _, cs := range e.certs {
				for _, s := range cs {
					s.checked = false
				}
			}
			e.discard(0)
			return refused
		}
		if len(best) < set.Majority() {
			return refused
		}
		slices.Sort(best)
		pos := min(best[len(best)-set.Majority()], bound)
		batch := make([]Entry, pos+1)
		for i := range batch {
			batch[i] = e.pending[i].e
		}
		if err := e.cfg.Apply(batch); err != nil {
			e.halted = fmt.Errorf("apply entries %d to %d: %w", batch[0].Index, batch[pos].Index, err)
			return e.halted
		}
		last := e.pending[pos]
		voters := e.applied.Voters
		if last.e.Type == raft.LogConfiguration {
			voters = last.voters
		}
		e.entries += uint64(pos + 1)
		for _, h := range e.pending[:pos+1] {
			e.bytes -= len(h.e.Data)
		}
		e.pending = slices.Delete(e.pending, 0, pos+1)
		e.linked -= pos + 1
		e.applied = Anchor{Index: last.e.Index, Term: last.e.Term, Hash: last.hash, Voters: voters}
		e.dropApplied()
	}
}
