package consensus

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/google/btree"

	"github.com/meshward/meshward/intel"
)

// policyStore holds the FSM's policies compactly, with the indexes that
// keep every Apply from scanning all of them:
//
//   - byID: the records themselves, ordered by ID (look-ups, pages, the
//     snapshot's order); cloned in O(1) for a snapshot (copy on write);
//   - byExpiry: (expiry, ID) of the policies that expire, so that prune
//     visits only what has expired;
//   - blocks and allows: the indicators of the block and allow policies,
//     by prefix, reversed domain or exact key (policyindex.go);
//   - a table of the reasons and authors, each held once;
//   - the change log (changes.go).
//
// A record is rebuilt into an intel.Policy only when a query returns it.
// Its times are held as Unix nanoseconds and come back in UTC.
type policyStore struct {
	byID     *btree.BTreeG[rec]
	byExpiry *btree.BTreeG[expiryItem]
	blocks   indicatorIndex
	allows   indicatorIndex
	strs     interner
	vals     slab[string]    // the values a rec does not hold compactly
	extras   slab[*recExtra] // the recExtra of the recs that have one
	changes  *changeLog      // nil while a restore builds the store
}

// rec is one policy as the store holds it: 48 bytes without pointers
// (the policies are most of the FSM's memory, and a collection need not
// scan them). IDs are the 16 hex digits of intel.PolicyID, held as the
// number they spell (so that numeric order is the IDs' order).
type rec struct {
	id uint64
	// When the indicator is an address or a CIDR in canonical form
	// (flagCompact), its value is rebuilt from its prefix: hi and bits,
	// and for IPv6 (flagV6) the low 64 bits as 8 bytes in the value.
	// Otherwise the value holds the indicator's value.
	hi uint64
	// created is CreatedAt in Unix nanoseconds (0: the zero time), and
	// ttl the whole seconds to ExpiresAt (0: never expires); times that
	// do not fit are in the recExtra (exactTimes), ttl then 0 or 1.
	created  int64
	valueRef uint32 // in vals; 0: none
	extraRef uint32 // in extras; 0: none
	reason   uint32 // in strs
	author   uint32 // in strs
	ttl      uint32
	action   uint8
	itype    uint8
	bits     uint8
	flags    uint8
}

// prec is a rec with its value and recExtra looked up: what the code
// that reads or builds policies works on.
type prec struct {
	rec
	value string
	x     *recExtra
}

// recTables are the tables a rec refers to.
type recTables struct {
	strs   []string
	vals   []string
	extras []*recExtra
}

func (t *recTables) view(r rec) prec {
	p := prec{rec: r}
	if r.valueRef != 0 {
		p.value = t.vals[r.valueRef]
	}
	if r.extraRef != 0 {
		p.x = t.extras[r.extraRef]
	}
	return p
}

// slab holds values by a uint32 reference (from 1), reusing freed ones.
type slab[T any] struct {
	items []T
	free  []uint32
}

func (s *slab[T]) put(v T) uint32 {
	if len(s.items) == 0 {
		s.items = make([]T, 1, 16) // reference 0 is "none"
	}
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		s.items[i] = v
		return i
	}
	s.items = append(s.items, v)
	return uint32(len(s.items) - 1)
}

func (s *slab[T]) release(i uint32) {
	if i == 0 {
		return
	}
	var zero T
	s.items[i] = zero
	s.free = append(s.free, i)
}

func (s *policyStore) tables() recTables {
	return recTables{strs: s.strs.strs, vals: s.vals.items, extras: s.extras.items}
}

func (s *policyStore) view(r rec) prec {
	t := s.tables()
	return t.view(r)
}

const (
	flagCompact uint8 = 1 << iota // the value is rebuilt from hi, lo, bits
	flagV6                        // ... as an IPv6 address or prefix
)

// recExtra holds what few policies have: evidence, times outside the
// range of Unix nanoseconds, an action or indicator type this version does
// not know. It is never changed once made (a change makes a new one), so
// that a snapshot may share it.
type recExtra struct {
	evidence           []intel.Evidence
	created, expires   time.Time
	exactTimes         bool
	action             intel.Action
	itype              intel.IndicatorType
	hasAction, hasType bool
}

// expiryItem orders the expiring policies by expiry, then ID.
type expiryItem struct {
	at int64 // Unix nanoseconds, clamped (see expiryKey)
	id uint64
}

func lessExpiry(a, b expiryItem) bool {
	return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id)) < 0
}

func lessRec(a, b rec) bool { return a.id < b.id }

func newPolicyStore() *policyStore {
	return &policyStore{
		byID:     btree.NewG(btreeDegree, lessRec),
		byExpiry: btree.NewG(btreeDegree, lessExpiry),
		blocks:   newIndicatorIndex(),
		allows:   newIndicatorIndex(),
		strs:     newInterner(),
	}
}

// Codes of the actions and indicator types; 0 is "held in recExtra".
var (
	actions = [...]intel.Action{"", intel.ActionBlock, intel.ActionAllow, intel.ActionObserve}
	itypes  = [...]intel.IndicatorType{"", intel.IPv4, intel.IPv6, intel.CIDR, intel.Domain, intel.URL, intel.SHA256}
)

const (
	actBlock uint8 = 1
	actAllow uint8 = 2
)

func actionCode(a intel.Action) uint8 {
	for i := 1; i < len(actions); i++ {
		if actions[i] == a {
			return uint8(i)
		}
	}
	return 0
}

func itypeCode(t intel.IndicatorType) uint8 {
	for i := 1; i < len(itypes); i++ {
		if itypes[i] == t {
			return uint8(i)
		}
	}
	return 0
}

// parseID reads a policy ID: 16 lower-case hex digits.
func parseID(id string) (uint64, bool) {
	if len(id) != 16 {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		return 0, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c >= 'A' && c <= 'F' {
			return 0, false // hex.Decode accepts upper case; IDs are lower case
		}
	}
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7]), true
}

func formatID(id uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// nanos returns t as Unix nanoseconds when that is exact and not 0 (0
// stands for the zero time).
func nanos(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, true
	}
	if y := t.Year(); y < 1680 || y > 2260 {
		return 0, false
	}
	n := t.UnixNano()
	return n, n != 0
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// setTimes stores created and expires in r, or in x (exactTimes) when r
// cannot hold them exactly; it reports whether x holds them.
func (r *prec) setTimes(x *recExtra, created, expires time.Time) bool {
	x.created, x.expires, x.exactTimes = time.Time{}, time.Time{}, false
	if c, ok := nanos(created); ok {
		if expires.IsZero() {
			r.created, r.ttl = c, 0
			return false
		}
		if e, ok := nanos(expires); ok {
			if d := e - c; d > 0 && d%int64(time.Second) == 0 && d/int64(time.Second) <= math.MaxUint32 {
				r.created, r.ttl = c, uint32(d/int64(time.Second))
				return false
			}
		}
	}
	x.created, x.expires, x.exactTimes = created, expires, true
	r.created, r.ttl = 0, 0
	if !expires.IsZero() {
		r.ttl = 1
	}
	return true
}

// expires reports whether r has an expiry.
func (r *prec) expires() bool { return r.ttl != 0 }

// expiryKey orders expiries, clamping those outside the range of Unix
// nanoseconds to its ends.
func expiryKey(t time.Time) int64 {
	if n, ok := nanos(t); ok {
		return n
	}
	if t.Year() < 1680 {
		return math.MinInt64
	}
	return math.MaxInt64
}

func (r *prec) createdAt() time.Time {
	if r.x != nil && r.x.exactTimes {
		return r.x.created
	}
	return fromNanos(r.created)
}

func (r *prec) expiresAt() time.Time {
	if r.x != nil && r.x.exactTimes {
		return r.x.expires
	}
	if r.ttl == 0 {
		return time.Time{}
	}
	return time.Unix(0, r.created+int64(r.ttl)*int64(time.Second)).UTC()
}

// prefixKey is r's prefix; r must be flagCompact.
func (r *prec) prefixKey() prefixKey {
	k := prefixKey{hi: r.hi, bits: r.bits}
	if r.flags&flagV6 != 0 {
		k.v6 = true
		for i := 0; i < 8 && i < len(r.value); i++ {
			k.lo = k.lo<<8 | uint64(r.value[i])
		}
	}
	return k
}

// active is intel.Policy.Active.
func (r *prec) active(now time.Time) bool {
	exp := r.expiresAt()
	return exp.IsZero() || now.Before(exp)
}

func (r *prec) actionOf() intel.Action {
	if r.action == 0 && r.x != nil {
		return r.x.action
	}
	return actions[r.action]
}

func (r *prec) indicator() intel.Indicator {
	t := itypes[r.itype]
	if r.itype == 0 && r.x != nil {
		t = r.x.itype
	}
	if r.flags&flagCompact == 0 {
		return intel.Indicator{Type: t, Value: r.value}
	}
	p := r.prefixKey().prefix()
	if t == intel.CIDR {
		return intel.Indicator{Type: t, Value: p.String()}
	}
	return intel.Indicator{Type: t, Value: p.Addr().String()}
}

// indexKey is how r's indicator is indexed.
func (r *prec) indexKey() ikey {
	if r.flags&flagCompact != 0 {
		return ikey{kind: kindPrefix, prefix: r.prefixKey()}
	}
	return indexKeyOf(r.indicator())
}

// indexKeyOf is how an indicator is indexed: its prefix if it has one,
// its reversed value if it is a domain, else its key.
func indexKeyOf(ind intel.Indicator) ikey {
	if p, ok := ind.Prefix(); ok {
		return ikey{kind: kindPrefix, prefix: keyOfPrefix(p)}
	}
	if ind.Type == intel.Domain {
		return ikey{kind: kindDomain, str: reverseDomain(ind.Value)}
	}
	return ikey{kind: kindExact, str: ind.Key()}
}

// compactIndicator fills r's indicator fields from ind.
func (r *prec) setIndicator(ind intel.Indicator) {
	r.itype = itypeCode(ind.Type)
	r.value, r.flags, r.hi, r.bits = ind.Value, 0, 0, 0
	if p, ok := ind.Prefix(); ok {
		var canonical string
		if ind.Type == intel.CIDR {
			canonical = p.String()
		} else if ind.Type == intel.IPv4 || ind.Type == intel.IPv6 {
			canonical = p.Addr().String()
		}
		if canonical == ind.Value {
			k := keyOfPrefix(p)
			r.value, r.hi, r.bits, r.flags = "", k.hi, k.bits, flagCompact
			if k.v6 {
				var lo [8]byte
				binary.BigEndian.PutUint64(lo[:], k.lo)
				r.value, r.flags = string(lo[:]), flagCompact|flagV6
			}
		}
	}
}

// makeRec builds the record of p; the strings are interned by the caller.
func makeRec(id uint64, p *intel.Policy) prec {
	r := prec{rec: rec{id: id, action: actionCode(p.Action)}}
	r.setIndicator(p.Indicator)
	var x recExtra
	need := false
	if r.action == 0 {
		x.action, x.hasAction, need = p.Action, true, true
	}
	if r.itype == 0 {
		x.itype, x.hasType, need = p.Indicator.Type, true, true
	}
	// Held as instants: they come back in UTC.
	if r.setTimes(&x, p.CreatedAt, p.ExpiresAt) {
		need = true
	}
	if len(p.Evidence) > 0 {
		x.evidence, need = p.Evidence, true
	}
	if need {
		r.x = x.heap()
	}
	return r
}

// policy rebuilds the intel.Policy of r; strs is the table r's strings
// are in. The evidence is a copy.
func (r *prec) policy(strs []string) intel.Policy {
	p := intel.Policy{
		ID:        formatID(r.id),
		Action:    r.actionOf(),
		Indicator: r.indicator(),
		Reason:    strs[r.reason],
		Author:    strs[r.author],
		CreatedAt: r.createdAt(),
		ExpiresAt: r.expiresAt(),
	}
	if r.x != nil && len(r.x.evidence) > 0 {
		p.Evidence = slices.Clone(r.x.evidence)
	}
	return p
}

func (r *prec) evidence() []intel.Evidence {
	if r.x == nil {
		return nil
	}
	return r.x.evidence
}

// withExtra returns a copy of r's extra (or a new one) for a change.
func (r *prec) extra() recExtra {
	if r.x == nil {
		return recExtra{}
	}
	return *r.x
}

// heap returns a copy of x on the heap (x itself stays on the stack).
func (x recExtra) heap() *recExtra { return &x }

func (x *recExtra) empty() bool {
	return len(x.evidence) == 0 && !x.exactTimes && !x.hasAction && !x.hasType
}

// len is the number of policies held.
func (s *policyStore) len() int { return s.byID.Len() }

// get returns the record with this ID.
func (s *policyStore) get(id uint64) (prec, bool) {
	r, ok := s.byID.Get(rec{id: id})
	if !ok {
		return prec{}, false
	}
	return s.view(r), true
}

// index is the indicator index of an action, or nil.
func (s *policyStore) index(action uint8) *indicatorIndex {
	switch action {
	case actBlock:
		return &s.blocks
	case actAllow:
		return &s.allows
	}
	return nil
}

// insert adds r (whose ID is not held), with its strings already interned.
func (s *policyStore) insert(r prec) {
	r.valueRef, r.extraRef = 0, 0
	if r.value != "" {
		r.valueRef = s.vals.put(r.value)
	}
	if r.x != nil {
		r.extraRef = s.extras.put(r.x)
	}
	s.byID.ReplaceOrInsert(r.rec)
	if r.expires() {
		s.byExpiry.ReplaceOrInsert(expiryItem{expiryKey(r.expiresAt()), r.id})
	}
	if x := s.index(r.action); x != nil {
		x.add(r.indexKey(), r.id)
	}
	s.changes.record(s, r, changeAdded)
}

// replace changes a held record's expiry, reason and evidence (what a
// merge may change; its indicator and action stay).
func (s *policyStore) replace(old, r prec) {
	if old.expires() {
		s.byExpiry.Delete(expiryItem{expiryKey(old.expiresAt()), old.id})
	}
	s.extras.release(old.extraRef)
	r.extraRef = 0
	if r.x != nil {
		r.extraRef = s.extras.put(r.x)
	}
	s.byID.ReplaceOrInsert(r.rec)
	if r.expires() {
		s.byExpiry.ReplaceOrInsert(expiryItem{expiryKey(r.expiresAt()), r.id})
	}
	s.strs.release(old.reason)
	s.changes.record(s, r, changeMerged)
}

// delete drops the policy with this ID, if held.
func (s *policyStore) delete(id uint64) bool {
	stored, ok := s.byID.Delete(rec{id: id})
	if !ok {
		return false
	}
	r := s.view(stored)
	s.vals.release(r.valueRef)
	s.extras.release(r.extraRef)
	if r.expires() {
		s.byExpiry.Delete(expiryItem{expiryKey(r.expiresAt()), r.id})
	}
	if x := s.index(r.action); x != nil {
		x.remove(r.indexKey(), r.id)
	}
	s.changes.record(s, r, changeRemoved)
	s.strs.release(r.reason)
	s.strs.release(r.author)
	return true
}

// put adds p, or merges it into the policy with the same ID: the later
// expiry (none if either has none), the old reason unless it was empty,
// the union of the evidence.
func (s *policyStore) put(p intel.Policy) {
	id, ok := parseID(p.ID)
	if !ok {
		return // never accepted: every policy's ID is validated
	}
	old, held := s.get(id)
	if !held {
		r := makeRec(id, &p)
		if len(p.Evidence) > 0 {
			x := r.extra()
			x.evidence = mergeEvidence(nil, p.Evidence)
			r.x = x.heap()
		}
		r.reason, r.author = s.strs.intern(p.Reason), s.strs.intern(p.Author)
		s.insert(r)
		return
	}
	merged := old
	oldExp := old.expiresAt()
	newExp := oldExp
	if oldExp.IsZero() || p.ExpiresAt.IsZero() {
		newExp = time.Time{}
	} else if p.ExpiresAt.After(oldExp) {
		newExp = p.ExpiresAt
	}
	reason := old.reason
	if s.strs.get(reason) == "" {
		reason = s.strs.intern(p.Reason)
	} else {
		s.strs.retain(reason)
	}
	ev := mergeEvidence(old.evidence(), p.Evidence)
	x := old.extra()
	x.evidence = ev
	merged.setTimes(&x, old.createdAt(), newExp)
	merged.x = nil
	if !x.empty() {
		merged.x = x.heap()
	}
	merged.reason = reason
	if !newExp.Equal(oldExp) || reason != old.reason || !slices.Equal(ev, old.evidence()) {
		s.replace(old, merged)
		return
	}
	s.strs.release(reason) // nothing changed: keep the record as it is
}

// pruneExpired drops the policies that have expired at now.
func (s *policyStore) pruneExpired(now time.Time) {
	for {
		it, ok := s.byExpiry.Min()
		if !ok {
			return
		}
		r, held := s.get(it.id)
		if held && r.active(now) {
			return
		}
		if !held {
			s.byExpiry.Delete(it) // cannot happen; keeps the loop finite
			continue
		}
		s.delete(it.id)
	}
}

// overlappingIDs returns, sorted, the IDs of the policies of action whose
// indicators overlap k.
func (s *policyStore) overlappingIDs(action uint8, k ikey) []uint64 {
	var ids []uint64
	s.index(action).overlapping(k, func(id uint64) bool {
		ids = append(ids, id)
		return true
	})
	slices.Sort(ids)
	return slices.Compact(ids)
}

// firstActive returns the active policy of action with the smallest ID
// among those overlapping k.
func (s *policyStore) firstActive(action uint8, k ikey, now time.Time) (prec, bool) {
	var (
		best  prec
		found bool
	)
	s.index(action).overlapping(k, func(id uint64) bool {
		if found && id >= best.id {
			return true
		}
		if r, ok := s.get(id); ok && r.active(now) {
			best, found = r, true
		}
		return true
	})
	return best, found
}

// prefixKeyOf is the prefix of a netip prefix as an index key.
func prefixIKey(p netip.Prefix) ikey { return ikey{kind: kindPrefix, prefix: keyOfPrefix(p)} }

// interner holds each reason and author string once, with a count of the
// records (and logged changes) that use it; id 0 is "".
type interner struct {
	ids  map[string]uint32
	strs []string
	refs []uint32
	free []uint32
}

func newInterner() interner {
	return interner{ids: map[string]uint32{}, strs: []string{""}, refs: []uint32{0}}
}

func (t *interner) intern(s string) uint32 {
	if s == "" {
		return 0
	}
	if id, ok := t.ids[s]; ok {
		t.refs[id]++
		return id
	}
	var id uint32
	if n := len(t.free); n > 0 {
		id, t.free = t.free[n-1], t.free[:n-1]
		t.strs[id], t.refs[id] = s, 1
	} else {
		id = uint32(len(t.strs))
		t.strs, t.refs = append(t.strs, s), append(t.refs, 1)
	}
	t.ids[s] = id
	return id
}

func (t *interner) get(id uint32) string { return t.strs[id] }

func (t *interner) retain(id uint32) {
	if id != 0 {
		t.refs[id]++
	}
}

func (t *interner) release(id uint32) {
	if id == 0 {
		return
	}
	if t.refs[id]--; t.refs[id] == 0 {
		delete(t.ids, t.strs[id])
		t.strs[id] = ""
		t.free = append(t.free, id)
	}
}

// load adds p as it is, as a restore does: a policy with the same ID
// held already is replaced.
func (s *policyStore) load(p intel.Policy) error {
	id, ok := parseID(p.ID)
	if !ok {
		return fmt.Errorf("policy id %q: want 16 lower-case hex digits", p.ID)
	}
	if last, ok := s.byID.Max(); ok && last.id >= id {
		s.delete(id) // out of order: perhaps held already (snapshots come in ID order)
	}
	r := makeRec(id, &p)
	r.reason, r.author = s.strs.intern(p.Reason), s.strs.intern(p.Author)
	s.insert(r)
	return nil
}
