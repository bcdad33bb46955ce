package responders

import (
	"cmp"
	"hash/maphash"
	"iter"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// none is the absent reference into a slab.
const none = -1

// pol flags.
const (
	fLocal     uint8 = 1 << iota // a local decision, not a mesh-wide policy
	fBlock                       // a valid, canonical block: in its key's blocks
	fAllow                       // an allow: in its key's allows, part of the veto
	fOdd                         // held whole in desiredState.odd
	fNoExpiry                    // never expires
	fNoCreated                   // CreatedAt is zero
	fMark                        // the resync mark (desiredState.marks)
	fDead                        // dropped, kept while it is its key's desired entry
)

// pol is one policy the reconciler holds, in a slab without pointers:
// the garbage collector never scans it. Its strings are interned or
// rebuilt on the way out: the ID from its 8 bytes, the indicator from
// its key. A policy whose fields have no compact form (an ID of another
// form, a time with a location or a monotonic reading, an action that is
// neither a valid block nor an allow) is held whole besides (fOdd).
type pol struct {
	id             uint64 // the ID's 8 bytes (compactID), when it has them
	created        int64  // CreatedAt in Unix nanoseconds
	expires        int64  // ExpiresAt in Unix nanoseconds, clamped
	key            int32  // in keys; none when neither block nor allow
	next           int32  // the next policy in its key's list
	hi             int32  // index in the expiry heap; none when not in it
	reason, author uint32 // interned
	flags          uint8
}

// keyRec is one indicator key: a single address by its 16 bytes, or any
// other key by its string (wide); the policies that block and allow it,
// and the block enforced for it.
type keyRec struct {
	addr    addrKey
	wide    int32 // in desiredState.wideKeys; none for an address
	blocks  int32 // list of the valid blocks, linked by pol.next
	allows  int32 // list of the allows
	desired int32 // the block enforced; none when none is
	live    bool
	dirty   bool
}

// desiredState is the reconciler's model of what must be blocked, kept up
// to date by changes: every held policy by ID, the blocks by indicator
// key, the allows and protected ranges that veto them, and the chosen
// policy of every key that must be blocked (desired). A change marks the
// keys it may affect as dirty; settle recomputes only those. Expiries
// wait in a heap, so that the policies expiring at a pass cost O(log n)
// each, not a scan of every policy.
//
// Policies and keys live in slabs of small structs without pointers,
// found by ID and by address through tables of slab indices (refTable),
// other keys through a map: about 120 bytes a policy blocking an address
// (BenchmarkDesiredMemory), where policies held whole in string-keyed
// maps cost about 470.
//
// Allow policies and protected ranges are expected to be few: a change
// to a network or domain allow, or to the protected ranges, rechecks
// every held block it could overlap (a scan), where a block change costs
// a constant number of map operations.
type desiredState struct {
	log *slog.Logger

	pols     slab[pol]
	freePols []int32
	odd      map[int32]intel.Policy // the fOdd policies, whole (no evidence)
	ids      [2]*refTable           // mesh [0] and local [1] policies by compactID
	oddIDs   [2]map[string]int32    // those whose ID has another form
	marks    [2]uint8               // each side's current resync mark: 0 or fMark
	strs     interner               // reasons and authors

	keys     slab[keyRec]
	freeKeys []int32
	addrs    *refTable        // address keys
	wides    map[string]int32 // other keys, by Indicator.Key()
	wideKeys []string         // by keyRec.wide
	freeWide []int32

	veto      veto // built from allows and protected
	vetoStale bool
	protected []netip.Prefix
	ndesired  int         // keys with a desired block
	digests   typeDigests // of the desired keys
	exp       []int32     // min-heap of pols by expiry (pol.expires)

	dirty    []int32 // keys to recompute, each with keyRec.dirty set
	allDirty bool
	// changed allows since the last settle, whose overlapping blocks
	// must be rechecked.
	allowAddrs, allowWide []intel.Indicator
}

func newDesiredState(log *slog.Logger) *desiredState {
	s := &desiredState{
		log:     log,
		odd:     make(map[int32]intel.Policy),
		oddIDs:  [2]map[string]int32{make(map[string]int32), make(map[string]int32)},
		wides:   make(map[string]int32),
		digests: make(typeDigests),
	}
	polHash := func(ref int32) uint64 { return hashID(s.pols.at(ref).id) }
	s.ids = [2]*refTable{newRefTable(polHash), newRefTable(polHash)}
	s.addrs = newRefTable(func(k int32) uint64 { return hashAddr(s.keys.at(k).addr) })
	return s
}

func hashID(id uint64) uint64   { return maphash.Comparable(hashSeed, id) }
func hashAddr(a addrKey) uint64 { return maphash.Comparable(hashSeed, a) }

// findAddr returns the key of address a, if held.
func (s *desiredState) findAddr(a addrKey) (int32, bool) {
	return s.addrs.find(hashAddr(a), func(k int32) bool { return s.keys.at(k).addr == a })
}

func side(local bool) int {
	if local {
		return 1
	}
	return 0
}

// lookupID returns the policy of that ID on one side.
func (s *desiredState) lookupID(id string, local bool) (int32, bool) {
	if v, ok := compactID(id); ok {
		return s.ids[side(local)].find(hashID(v), func(ref int32) bool { return s.pols.at(ref).id == v })
	}
	ref, ok := s.oddIDs[side(local)][id]
	return ref, ok
}

// size is the number of policies held on one side.
func (s *desiredState) size(local bool) int {
	return s.ids[side(local)].Len() + len(s.oddIDs[side(local)])
}

// store puts p's fields in a new pol of flags (fBlock or fAllow for a
// compact one) and returns it, not yet indexed.
func (s *desiredState) store(p intel.Policy, flags uint8) int32 {
	var ref int32
	if n := len(s.freePols); n > 0 {
		ref = s.freePols[n-1]
		s.freePols = s.freePols[:n-1]
	} else {
		ref = s.pols.push(pol{})
	}
	pl := pol{key: none, next: none, hi: none, flags: flags}
	id, idOK := compactID(p.ID)
	pl.id = id
	odd := !idOK || flags&(fBlock|fAllow) == 0
	if p.CreatedAt.IsZero() {
		pl.flags |= fNoCreated
	} else if n, ok := compactTime(p.CreatedAt); ok {
		pl.created = n
	} else {
		odd = true
	}
	if p.ExpiresAt.IsZero() {
		pl.flags |= fNoExpiry
	} else {
		pl.expires = clampNanos(p.ExpiresAt)
		if _, ok := compactTime(p.ExpiresAt); !ok {
			odd = true
		}
	}
	if odd {
		pl.flags |= fOdd
		p.Evidence = nil // no backend needs it
		s.odd[ref] = p
	} else {
		pl.reason, pl.author = s.strs.ref(p.Reason), s.strs.ref(p.Author)
	}
	*s.pols.at(ref) = pl
	return ref
}

// free returns a pol to the slab.
func (s *desiredState) free(ref int32) {
	pl := s.pols.at(ref)
	if pl.flags&fOdd != 0 {
		delete(s.odd, ref)
	} else {
		s.strs.unref(pl.reason)
		s.strs.unref(pl.author)
	}
	*pl = pol{}
	s.freePols = append(s.freePols, ref)
}

// policy rebuilds the policy of ref.
func (s *desiredState) policy(ref int32) intel.Policy {
	pl := s.pols.at(ref)
	if pl.flags&fOdd != 0 {
		return s.odd[ref]
	}
	p := intel.Policy{
		ID:        hexID(pl.id),
		Action:    intel.ActionAllow,
		Indicator: s.indicator(pl.key),
		Reason:    s.strs.str(pl.reason),
		Author:    s.strs.str(pl.author),
	}
	if pl.flags&fBlock != 0 {
		p.Action = intel.ActionBlock
	}
	if pl.flags&fNoCreated == 0 {
		p.CreatedAt = fromNanos(pl.created)
	}
	if pl.flags&fNoExpiry == 0 {
		p.ExpiresAt = fromNanos(pl.expires)
	}
	return p
}

// policyID is the ID of ref.
func (s *desiredState) policyID(ref int32) string {
	if pl := s.pols.at(ref); pl.flags&fOdd == 0 {
		return hexID(pl.id)
	}
	return s.odd[ref].ID
}

// sameAs reports whether ref holds the same version of p (samePolicy),
// without rebuilding it.
func (s *desiredState) sameAs(ref int32, p intel.Policy) bool {
	pl := s.pols.at(ref)
	if pl.flags&fOdd != 0 {
		return samePolicy(s.odd[ref], p)
	}
	switch p.Action {
	case intel.ActionBlock:
		if pl.flags&fBlock == 0 {
			return false
		}
	case intel.ActionAllow:
		if pl.flags&fAllow == 0 {
			return false
		}
	default:
		return false
	}
	if id, ok := compactID(p.ID); !ok || id != pl.id {
		return false
	}
	if s.strs.str(pl.reason) != p.Reason || s.strs.str(pl.author) != p.Author {
		return false
	}
	if p.CreatedAt.IsZero() != (pl.flags&fNoCreated != 0) || !p.CreatedAt.IsZero() && !p.CreatedAt.Equal(fromNanos(pl.created)) {
		return false
	}
	if p.ExpiresAt.IsZero() != (pl.flags&fNoExpiry != 0) || !p.ExpiresAt.IsZero() && !p.ExpiresAt.Equal(fromNanos(pl.expires)) {
		return false
	}
	kr := s.keys.at(pl.key)
	if kr.wide == none {
		a, ok := addrKeyOf(p.Indicator)
		return ok && a == kr.addr
	}
	return s.wideKeys[kr.wide] == p.Indicator.Key()
}

// same reports whether a and b are the same version of a policy
// (samePolicy).
func (s *desiredState) same(a, b int32) bool {
	pa, pb := s.pols.at(a), s.pols.at(b)
	if (pa.flags|pb.flags)&fOdd != 0 {
		return samePolicy(s.policy(a), s.policy(b))
	}
	const fields = fBlock | fAllow | fNoExpiry | fNoCreated
	return pa.id == pb.id && pa.key == pb.key && pa.flags&fields == pb.flags&fields &&
		pa.reason == pb.reason && pa.author == pb.author &&
		(pa.flags&fNoCreated != 0 || pa.created == pb.created) &&
		(pa.flags&fNoExpiry != 0 || pa.expires == pb.expires)
}

// findKey returns the key of ind, if held.
func (s *desiredState) findKey(ind intel.Indicator) (int32, bool) {
	if a, ok := addrKeyOf(ind); ok {
		return s.findAddr(a)
	}
	k, ok := s.wides[ind.Key()]
	return k, ok
}

// findKeyString returns the key of a key string (Indicator.Key), if held.
func (s *desiredState) findKeyString(key string) (int32, bool) {
	if a, ok := addrKeyOf(parseKey(key)); ok {
		return s.findAddr(a)
	}
	k, ok := s.wides[key]
	return k, ok
}

// keyFor returns the key of ind, made if not held.
func (s *desiredState) keyFor(ind intel.Indicator) int32 {
	if k, ok := s.findKey(ind); ok {
		return k
	}
	kr := keyRec{wide: none, blocks: none, allows: none, desired: none, live: true}
	a, isAddr := addrKeyOf(ind)
	if isAddr {
		kr.addr = a
	} else {
		key := ind.Key()
		if n := len(s.freeWide); n > 0 {
			kr.wide = s.freeWide[n-1]
			s.freeWide = s.freeWide[:n-1]
			s.wideKeys[kr.wide] = key
		} else {
			kr.wide = int32(len(s.wideKeys))
			s.wideKeys = append(s.wideKeys, key)
		}
	}
	var k int32
	if n := len(s.freeKeys); n > 0 {
		k = s.freeKeys[n-1]
		s.freeKeys = s.freeKeys[:n-1]
		*s.keys.at(k) = kr
	} else {
		k = s.keys.push(kr)
	}
	if isAddr {
		s.addrs.insert(k)
	} else {
		s.wides[s.wideKeys[kr.wide]] = k
	}
	return k
}

// releaseKey frees k once nothing refers to it: no policy, no desired
// block, not waiting in the dirty list.
func (s *desiredState) releaseKey(k int32) {
	kr := s.keys.at(k)
	if kr.blocks != none || kr.allows != none || kr.desired != none || kr.dirty {
		return
	}
	if kr.wide == none {
		s.addrs.delete(k)
	} else {
		delete(s.wides, s.wideKeys[kr.wide])
		s.wideKeys[kr.wide] = ""
		s.freeWide = append(s.freeWide, kr.wide)
	}
	*kr = keyRec{}
	s.freeKeys = append(s.freeKeys, k)
}

// indicator is the indicator of key k.
func (s *desiredState) indicator(k int32) intel.Indicator {
	kr := s.keys.at(k)
	if kr.wide == none {
		return kr.addr.indicator()
	}
	return parseKey(s.wideKeys[kr.wide])
}

// keyString is Indicator.Key of key k.
func (s *desiredState) keyString(k int32) string {
	kr := s.keys.at(k)
	if kr.wide == none {
		return kr.addr.key()
	}
	return s.wideKeys[kr.wide]
}

// appendKey appends Indicator.Key of key k to b.
func (s *desiredState) appendKey(b []byte, k int32) []byte {
	kr := s.keys.at(k)
	if kr.wide == none {
		return kr.addr.appendKey(b)
	}
	return append(b, s.wideKeys[kr.wide]...)
}

func (s *desiredState) keyType(k int32) intel.IndicatorType {
	kr := s.keys.at(k)
	if kr.wide == none {
		return kr.addr.typ()
	}
	return parseKey(s.wideKeys[kr.wide]).Type
}

func (s *desiredState) keyHash(k int32) uint64 {
	kr := s.keys.at(k)
	if kr.wide == none {
		return kr.addr.hash()
	}
	return KeyHash(s.wideKeys[kr.wide])
}

func (s *desiredState) markDirty(k int32) {
	if kr := s.keys.at(k); !kr.dirty {
		kr.dirty = true
		s.dirty = append(s.dirty, k)
	}
}

// unlink removes ref from the list at head.
func (s *desiredState) unlink(head *int32, ref int32) {
	for p := head; *p != none; p = &s.pols.at(*p).next {
		if *p == ref {
			*p = s.pols.at(ref).next
			s.pols.at(ref).next = none
			return
		}
	}
}

// put holds p (replacing the policy of the same ID from the same side),
// unless it is no longer active at now, in which case the policy of that
// ID is dropped.
func (s *desiredState) put(p intel.Policy, local bool, now time.Time) {
	if old, ok := s.lookupID(p.ID, local); ok {
		s.drop(old)
	}
	if !p.Active(now) {
		return
	}
	sd := side(local)
	flags := s.marks[sd]
	if local {
		flags |= fLocal
	}
	switch p.Action {
	case intel.ActionBlock:
		// A malformed indicator cannot be enforced, and handing it to a
		// backend could fail the whole batch it travels in.
		if p.Indicator.Validate() == nil {
			flags |= fBlock
		}
	case intel.ActionAllow:
		flags |= fAllow
	}
	ref := s.store(p, flags)
	if _, ok := compactID(p.ID); ok {
		s.ids[sd].insert(ref) // by pol.id
	} else {
		s.oddIDs[sd][p.ID] = ref
	}
	if !p.ExpiresAt.IsZero() {
		s.heapPush(ref)
	}
	if flags&(fBlock|fAllow) == 0 {
		return
	}
	k := s.keyFor(p.Indicator)
	s.pols.at(ref).key = k
	kr := s.keys.at(k)
	if flags&fBlock != 0 {
		s.pols.at(ref).next, kr.blocks = kr.blocks, ref
		s.markDirty(k)
	} else {
		s.pols.at(ref).next, kr.allows = kr.allows, ref
		s.allowChanged(p.Indicator)
	}
}

// remove drops the policy of that ID, if held.
func (s *desiredState) remove(id string, local bool) {
	if ref, ok := s.lookupID(id, local); ok {
		s.drop(ref)
	}
}

func (s *desiredState) drop(ref int32) {
	pl := s.pols.at(ref)
	local := pl.flags&fLocal != 0
	if pl.flags&fOdd == 0 {
		s.ids[side(local)].delete(ref)
	} else {
		id := s.odd[ref].ID
		if _, ok := compactID(id); ok {
			s.ids[side(local)].delete(ref)
		} else {
			delete(s.oddIDs[side(local)], id)
		}
	}
	if pl.hi != none {
		s.heapRemove(int(pl.hi))
	}
	k := pl.key
	switch {
	case pl.flags&fBlock != 0:
		s.unlink(&s.keys.at(k).blocks, ref)
		s.markDirty(k)
	case pl.flags&fAllow != 0:
		s.unlink(&s.keys.at(k).allows, ref)
		s.allowChanged(s.indicator(k))
	}
	if k != none && s.keys.at(k).desired == ref {
		// settle still compares it with its successor.
		s.pols.at(ref).flags |= fDead
	} else {
		s.free(ref)
	}
	if k != none {
		s.releaseKey(k)
	}
}

// allowChanged records that an allow of ind came or went: the veto is
// rebuilt and the blocks it may overlap rechecked at the next settle.
func (s *desiredState) allowChanged(ind intel.Indicator) {
	s.vetoStale = true
	if isAddr(ind) {
		s.allowAddrs = append(s.allowAddrs, ind)
	} else {
		s.allowWide = append(s.allowWide, ind)
	}
}

// active reports whether ref is active at now (n: now in Unix
// nanoseconds).
func (s *desiredState) active(ref int32, now time.Time, n int64) bool {
	pl := s.pols.at(ref)
	switch {
	case pl.flags&fOdd != 0:
		return s.odd[ref].Active(now)
	case pl.flags&fNoExpiry != 0:
		return true
	}
	return n < pl.expires
}

// expire drops every policy that is no longer active at now.
func (s *desiredState) expire(now time.Time) {
	n := clampNanos(now)
	for len(s.exp) > 0 && !s.active(s.exp[0], now, n) {
		s.drop(s.exp[0])
	}
}

// nextExpiry is the earliest expiry of a held policy (zero: none).
func (s *desiredState) nextExpiry() time.Time {
	if len(s.exp) == 0 {
		return time.Time{}
	}
	ref := s.exp[0]
	if s.pols.at(ref).flags&fOdd != 0 {
		return s.odd[ref].ExpiresAt
	}
	return fromNanos(s.pols.at(ref).expires)
}

// The expiry heap: a min-heap of pol references by the pols' expiries,
// each pol knowing its index (pol.hi). It holds 4 bytes a policy: the
// expiry is read from the pol, which is where it would be looked at
// anyway when the heap's top is checked.

func (s *desiredState) heapPush(ref int32) {
	s.exp = append(s.exp, ref)
	s.pols.at(ref).hi = int32(len(s.exp) - 1)
	s.heapUp(len(s.exp) - 1)
}

func (s *desiredState) heapRemove(i int) {
	last := len(s.exp) - 1
	s.pols.at(s.exp[i]).hi = none
	if i != last {
		s.exp[i] = s.exp[last]
		s.pols.at(s.exp[i]).hi = int32(i)
	}
	s.exp = s.exp[:last]
	if i != last {
		if !s.heapDown(i) {
			s.heapUp(i)
		}
	}
	if cap(s.exp) > 1024 && len(s.exp) < cap(s.exp)/4 {
		s.exp = slices.Clip(slices.Clone(s.exp))
	}
}

// expAt is the expiry of the heap's entry i.
func (s *desiredState) expAt(i int) int64 { return s.pols.at(s.exp[i]).expires }

func (s *desiredState) heapSwap(i, j int) {
	s.exp[i], s.exp[j] = s.exp[j], s.exp[i]
	s.pols.at(s.exp[i]).hi = int32(i)
	s.pols.at(s.exp[j]).hi = int32(j)
}

func (s *desiredState) heapUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.expAt(p) <= s.expAt(i) {
			return
		}
		s.heapSwap(i, p)
		i = p
	}
}

// heapDown moves i down; it reports whether it moved.
func (s *desiredState) heapDown(i0 int) bool {
	i, n := i0, len(s.exp)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && s.expAt(r) < s.expAt(l) {
			j = r
		}
		if s.expAt(i) <= s.expAt(j) {
			break
		}
		s.heapSwap(i, j)
		i = j
	}
	return i > i0
}

// resync makes the held policies of one side exactly list: those absent
// from it are dropped, those new or changed are put. Unchanged policies
// cost a look-up each.
func (s *desiredState) resync(local bool, list []intel.Policy, now time.Time) {
	rs := s.beginResync(local, now, len(list))
	rs.take(list)
	rs.end()
}

// resyncer is a resync taking its list in parts (pages). Each policy it
// sees is given its side's new mark; end drops those with the old one.
type resyncer struct {
	s     *desiredState
	local bool
	now   time.Time
}

// beginResync starts a resync of one side. sizeHint, the number of
// policies expected, sizes what is still empty when the side holds
// nothing yet (a first read of a million policies would otherwise grow
// it step by step). The dirty list is not sized.
func (s *desiredState) beginResync(local bool, now time.Time, sizeHint int) *resyncer {
	sd := side(local)
	if sizeHint > 1024 && s.size(local) == 0 {
		s.ids[sd].reserve(sizeHint)
		if s.keys.len() == 0 {
			s.addrs.reserve(sizeHint)
		}
	}
	s.marks[sd] ^= fMark
	return &resyncer{s: s, local: local, now: now}
}

func (r *resyncer) take(list []intel.Policy) {
	s, sd := r.s, side(r.local)
	for _, p := range list {
		if ref, ok := s.lookupID(p.ID, r.local); ok && s.sameAs(ref, p) {
			s.pols.at(ref).flags = s.pols.at(ref).flags&^fMark | s.marks[sd]
			continue
		}
		s.put(p, r.local, r.now) // marked by put
	}
}

// end drops the policies no part held.
func (r *resyncer) end() {
	s, sd := r.s, side(r.local)
	var gone []int32 // the table changes as they are dropped
	for ref := range s.ids[sd].all {
		if s.pols.at(ref).flags&fMark != s.marks[sd] {
			gone = append(gone, ref)
		}
	}
	for _, ref := range s.oddIDs[sd] {
		if s.pols.at(ref).flags&fMark != s.marks[sd] {
			gone = append(gone, ref)
		}
	}
	for _, ref := range gone {
		s.drop(ref)
	}
}

// samePolicy reports whether p and q are the same version of a policy:
// every field that reaches a backend or an event. Evidence does neither,
// and is not held.
func samePolicy(p, q intel.Policy) bool {
	return p.ID == q.ID && p.Action == q.Action && p.Indicator == q.Indicator && p.Reason == q.Reason &&
		p.Author == q.Author && p.CreatedAt.Equal(q.CreatedAt) && p.ExpiresAt.Equal(q.ExpiresAt)
}

// setProtected records the protected ranges; when they differ from those
// held, every block is rechecked.
func (s *desiredState) setProtected(ps []netip.Prefix) {
	if slices.Equal(ps, s.protected) {
		return
	}
	s.protected = slices.Clone(ps)
	s.vetoStale = true
	s.allDirty = true
}

// delta is what a settle changed in the desired state.
type delta struct {
	add     []intel.Policy    // keys newly desired
	remove  []intel.Indicator // keys no longer desired
	refresh []intel.Policy    // keys still desired, by a policy that changed
	// belowFloor counts the recomputed keys a safety floor refused.
	belowFloor int
}

// settle recomputes the dirty keys and returns how the desired state
// changed, each list sorted by indicator when short: the refreshes
// always (a full pass hands them on too), the additions and removals
// when lists is set. The policies of the lists are rebuilt, for the
// changed keys only.
func (s *desiredState) settle(lists bool) delta {
	if s.vetoStale {
		s.rebuildVeto()
	}
	if s.allDirty {
		for k := range int32(s.keys.len()) {
			if kr := s.keys.at(k); kr.live && (kr.blocks != none || kr.desired != none) {
				s.markDirty(k)
			}
		}
	} else {
		for _, a := range s.allowAddrs {
			if k, ok := s.findKey(a); ok {
				s.markDirty(k)
			}
		}
		s.markOverlapping(true, s.allowAddrs)
		s.markOverlapping(false, s.allowWide)
	}
	s.allDirty, s.allowAddrs, s.allowWide = false, nil, nil
	var d delta
	if lists && len(s.dirty) > 64 {
		d.add = make([]intel.Policy, 0, len(s.dirty))
	}
	for _, k := range s.dirty {
		s.keys.at(k).dirty = false
		cur, below := s.choose(k)
		if below {
			d.belowFloor++
		}
		kr := s.keys.at(k)
		old := kr.desired
		switch {
		case cur == none && old != none:
			kr.desired = none
			s.ndesired--
			s.digests.removeHash(s.keyType(k), s.keyHash(k))
			if lists {
				d.remove = append(d.remove, s.indicator(k))
			}
			s.release(old)
		case cur == none:
		case old == none:
			kr.desired = cur
			s.ndesired++
			s.digests.addHash(s.keyType(k), s.keyHash(k))
			if lists {
				d.add = append(d.add, s.policy(cur))
			}
		case cur != old:
			kr.desired = cur
			if !s.same(cur, old) {
				d.refresh = append(d.refresh, s.policy(cur))
			}
			s.release(old)
		}
		s.releaseKey(k)
	}
	if cap(s.dirty) > 1024 {
		// A first pass's list would otherwise be held for good.
		s.dirty = nil
	} else {
		s.dirty = s.dirty[:0]
	}
	sortPolicies(d.add)
	sortPolicies(d.refresh)
	sortIndicators(d.remove)
	return d
}

// release frees ref, no longer desired, if it was dropped.
func (s *desiredState) release(ref int32) {
	if s.pols.at(ref).flags&fDead != 0 {
		s.free(ref)
	}
}

// markOverlapping marks dirty every key holding a block that overlaps
// one of inds: of the wide keys only, or of every key. One scan, and
// none when inds is empty.
func (s *desiredState) markOverlapping(wideOnly bool, inds []intel.Indicator) {
	if len(inds) == 0 {
		return
	}
	overlaps := func(ind intel.Indicator) bool {
		for _, a := range inds {
			if ind.Overlaps(a) {
				return true
			}
		}
		return false
	}
	if wideOnly {
		for key, k := range s.wides {
			if s.keys.at(k).blocks != none && overlaps(parseKey(key)) {
				s.markDirty(k)
			}
		}
		return
	}
	// An address overlaps only the networks (and addresses) that
	// contain it: no indicator is built for each.
	var nets []netip.Prefix
	for _, a := range inds {
		if q, ok := a.Prefix(); ok {
			nets = append(nets, q)
		}
	}
	for k := range int32(s.keys.len()) {
		kr := s.keys.at(k)
		if !kr.live || kr.blocks == none {
			continue
		}
		if kr.wide != none {
			if overlaps(parseKey(s.wideKeys[kr.wide])) {
				s.markDirty(k)
			}
			continue
		}
		a := kr.addr.addr()
		p := netip.PrefixFrom(a, a.BitLen())
		for _, q := range nets {
			if p.Overlaps(q) {
				s.markDirty(k)
				break
			}
		}
	}
}

// rebuildVeto rebuilds the veto from the held allows and protected
// ranges.
func (s *desiredState) rebuildVeto() {
	v := veto{protected: s.protected}
	for k := range int32(s.keys.len()) {
		if kr := s.keys.at(k); kr.live && kr.allows != none {
			v.add(s.indicator(k))
		}
	}
	s.veto, s.vetoStale = v, false
}

// outlasts reports whether a expires strictly later than b.
func (s *desiredState) outlasts(a, b int32) bool {
	pa, pb := s.pols.at(a), s.pols.at(b)
	if (pa.flags|pb.flags)&fOdd != 0 {
		return outlasts(s.policy(a), s.policy(b))
	}
	switch {
	case pb.flags&fNoExpiry != 0:
		return false
	case pa.flags&fNoExpiry != 0:
		return true
	}
	return pa.expires > pb.expires
}

// idLess reports whether a's ID sorts before b's.
func (s *desiredState) idLess(a, b int32) bool {
	pa, pb := s.pols.at(a), s.pols.at(b)
	if (pa.flags|pb.flags)&fOdd == 0 {
		return pa.id < pb.id // the order of their hexadecimal forms
	}
	return s.policyID(a) < s.policyID(b)
}

// choose returns the block to enforce for key k, none when there is
// none: the held block that lasts longest (a mesh policy, then the lower
// ID, on a tie), unless an allow or a protected range covers the
// indicator or a safety floor refuses it (below).
func (s *desiredState) choose(k int32) (best int32, below bool) {
	best = none
	for r := s.keys.at(k).blocks; r != none; r = s.pols.at(r).next {
		if best == none || s.outlasts(r, best) {
			best = r
			continue
		}
		if s.outlasts(best, r) {
			continue
		}
		bl, rl := s.pols.at(best).flags&fLocal != 0, s.pols.at(r).flags&fLocal != 0
		if bl && !rl || bl == rl && s.idLess(r, best) {
			best = r
		}
	}
	if best == none {
		return none, false
	}
	ind := s.indicator(k)
	if s.veto.covers(ind) {
		return none, false
	}
	if err := floors.CheckBlock(ind, true); err != nil {
		s.log.Debug("desired block dropped by a safety floor", "policy", s.policyID(best), "indicator", ind.Value, "err", err)
		return none, true
	}
	return best, false
}

// setDesired makes p the desired policy of its key directly (a later
// one replaces an earlier one): the state of NewDesiredSet.
func (s *desiredState) setDesired(p intel.Policy) {
	var flags uint8
	if p.Action == intel.ActionBlock {
		flags = fBlock
	}
	k := s.keyFor(p.Indicator)
	ref := s.store(p, flags)
	s.pols.at(ref).key = k
	if old := s.keys.at(k).desired; old != none {
		s.free(old)
	} else {
		s.ndesired++
		s.digests.addHash(s.keyType(k), s.keyHash(k))
	}
	s.keys.at(k).desired = ref
}

func (t typeDigests) addHash(typ intel.IndicatorType, h uint64) {
	d := t[typ]
	if d == nil {
		d = &Digest{}
		t[typ] = d
	}
	d.AddHash(h)
}

func (t typeDigests) removeHash(typ intel.IndicatorType, h uint64) {
	if d := t[typ]; d != nil {
		d.RemoveHash(h)
	}
}

func isAddr(ind intel.Indicator) bool { return ind.Type == intel.IPv4 || ind.Type == intel.IPv6 }

// sortLimit is the longest list sorted before it reaches a backend:
// sorting makes logs and tests read in order, and would cost seconds on
// the million entries of a first pass.
const sortLimit = 10_000

// sortPolicies sorts by indicator (type, then value) a list no longer
// than sortLimit.
func sortPolicies(ps []intel.Policy) {
	if len(ps) <= sortLimit {
		slices.SortFunc(ps, func(a, b intel.Policy) int { return compareIndicators(a.Indicator, b.Indicator) })
	}
}

func sortIndicators(inds []intel.Indicator) {
	if len(inds) <= sortLimit {
		slices.SortFunc(inds, compareIndicators)
	}
}

func compareIndicators(a, b intel.Indicator) int {
	return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
}

// DesiredSet is the desired state as a Comparer reads it: the policy to
// enforce for every indicator that must be blocked, keyed by
// Indicator.Key(), with the digests of its keys by indicator type. It is
// read-only, and valid only during the call it is passed to; the zero
// DesiredSet is empty. Its policies are rebuilt as they are read: All
// costs a few small allocations an entry, a digest comparison none.
type DesiredSet struct {
	s        *desiredState
	thorough bool
}

// NewDesiredSet returns the desired set of ps, keyed by their indicators'
// keys (a later policy replaces an earlier one of the same key). It is
// for tests and tools; the reconciler hands backends its own. thorough
// is what Thorough reports.
func NewDesiredSet(ps []intel.Policy, thorough bool) DesiredSet {
	s := newDesiredState(slog.New(slog.DiscardHandler))
	for _, p := range ps {
		s.setDesired(p)
	}
	return DesiredSet{s: s, thorough: thorough}
}

// Digest is the digest of the keys of the indicator types supports
// accepts (nil: every type).
func (d DesiredSet) Digest(supports func(intel.IndicatorType) bool) Digest {
	var out Digest
	if d.s == nil {
		return out
	}
	for t, dg := range d.s.digests {
		if supports == nil || supports(t) {
			out.Merge(*dg)
		}
	}
	return out
}

// Thorough reports whether the comparison must look at every entry: the
// backend may hold entries the desired state does not know of, or
// entries with an earlier expiry than their policy's (a change handed to
// it failed). When it is false and the backend's own digest of what it
// holds equals Digest, a Comparer may report nothing to do at once.
func (d DesiredSet) Thorough() bool { return d.thorough }

// Len is the number of entries.
func (d DesiredSet) Len() int {
	if d.s == nil {
		return 0
	}
	return d.s.ndesired
}

// Has reports whether key is desired.
func (d DesiredSet) Has(key string) bool {
	if d.s == nil {
		return false
	}
	k, ok := d.s.findKeyString(key)
	return ok && d.s.keys.at(k).desired != none
}

// hasAddr reports whether the address of a is desired.
func (d DesiredSet) hasAddr(a addrKey) bool {
	if d.s == nil {
		return false
	}
	k, ok := d.s.findAddr(a)
	return ok && d.s.keys.at(k).desired != none
}

// Get returns the policy of key.
func (d DesiredSet) Get(key string) (*intel.Policy, bool) {
	if d.s == nil {
		return nil, false
	}
	k, ok := d.s.findKeyString(key)
	if !ok || d.s.keys.at(k).desired == none {
		return nil, false
	}
	p := d.s.policy(d.s.keys.at(k).desired)
	return &p, true
}

// All yields every entry, in no particular order. The policy yielded is
// valid until the next.
func (d DesiredSet) All() iter.Seq2[string, *intel.Policy] {
	return func(yield func(string, *intel.Policy) bool) {
		if d.s == nil {
			return
		}
		var p intel.Policy // one for all: a million entries would allocate a million
		for k := range int32(d.s.keys.len()) {
			kr := d.s.keys.at(k)
			if !kr.live || kr.desired == none {
				continue
			}
			p = d.s.policy(kr.desired)
			if !yield(d.s.keyString(k), &p) {
				return
			}
		}
	}
}

// DesiredEntry is one entry of a DesiredSet, read field by field: a
// Comparer that looks most entries up and hands few on reads the
// address or key of each and rebuilds the policy of those it hands on
// alone. It is valid while its set is.
type DesiredEntry struct {
	s *desiredState
	k int32
}

// Type is the type of the entry's indicator.
func (e DesiredEntry) Type() intel.IndicatorType { return e.s.keyType(e.k) }

// Addr is the address of an IPv4 or IPv6 entry in canonical form; ok is
// false for the other entries (look them up by Key).
func (e DesiredEntry) Addr() (a netip.Addr, ok bool) {
	if kr := e.s.keys.at(e.k); kr.wide == none {
		return kr.addr.addr(), true
	}
	return netip.Addr{}, false
}

// Key is the entry's key (Indicator.Key); it allocates for an address.
func (e DesiredEntry) Key() string { return e.s.keyString(e.k) }

// ExpiresAt is the expiry of the entry's policy (zero: never).
func (e DesiredEntry) ExpiresAt() time.Time {
	ref := e.s.keys.at(e.k).desired
	switch pl := e.s.pols.at(ref); {
	case pl.flags&fOdd != 0:
		return e.s.odd[ref].ExpiresAt
	case pl.flags&fNoExpiry != 0:
		return time.Time{}
	default:
		return fromNanos(pl.expires)
	}
}

// Policy rebuilds the entry's policy.
func (e DesiredEntry) Policy() intel.Policy { return e.s.policy(e.s.keys.at(e.k).desired) }

// Entries yields every entry, in no particular order, without building
// its key or policy.
func (d DesiredSet) Entries() iter.Seq[DesiredEntry] {
	return func(yield func(DesiredEntry) bool) {
		for k := range d.keys() {
			if !yield(DesiredEntry{s: d.s, k: k}) {
				return
			}
		}
	}
}

// keys yields the key of every entry, in no particular order.
func (d DesiredSet) keys() iter.Seq[int32] {
	return func(yield func(int32) bool) {
		if d.s == nil {
			return
		}
		for k := range int32(d.s.keys.len()) {
			if kr := d.s.keys.at(k); kr.live && kr.desired != none && !yield(k) {
				return
			}
		}
	}
}
