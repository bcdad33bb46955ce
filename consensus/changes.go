package consensus

// changeLog is the bounded log of changes to the held policies behind
// Consensus.PolicyChanges: every add, merge that changes a policy, and
// removal (revoke, dropped by an allow or a protected range, expired)
// appends one entry with the next sequence number. It is local to this
// process (never persisted or replicated): sequence numbers start at 1
// when the process starts, and a restored snapshot, which replaces the
// whole state, empties the log and consumes one number, so that no
// caller can mistake the changes after it for the whole story.
//
// An entry is the record as the store holds it (48 bytes without
// pointers; its number is its place in the ring, and what the change
// was is in its flags), so that the 65,536 entries of a full log cost
// 3 MiB, where a record with its value and extra beside it cost 6. The
// few values and extras an entry needs (an indicator without a compact
// form, evidence) are copied into the log's own slabs, as the store's
// slots may be reused; reason and author strings stay in the store's
// table (counted references).
//
// The log keeps as many changes as an eighth of the policies held
// (changeLogShare), at least minChangeLog and at most size: a reader
// that falls further behind reads the policies whole, which then costs
// at most eight times reading the changes it missed. A log that kept
// 65,536 changes whatever the store held cost 3 MiB of a node holding
// 100,000 policies, where an eighth of them is 0.6.
type changeLog struct {
	entries []rec // the ring: entries[(n-start) % ring] is change n
	vals    slab[string]
	extras  slab[*recExtra]
	size    int    // the most changes kept
	ring    int    // the ring's length: entries grows up to it, then wraps
	seq     uint64 // the last number given
	start   uint64 // the number of entries[0] when the ring was last emptied or grown
}

// The log keeps a changeLogShare-th of the policies held, at least
// minChangeLog changes (or size, when smaller).
const (
	changeLogShare = 8
	minChangeLog   = 4096
)

// Flags of an entry's rec (never set on a record of the store).
const (
	flagRemoved uint8 = 1 << 6 // the change removed the policy
	flagAdded   uint8 = 1 << 7 // the change added a policy not held before
)

// defaultChangeLogSize is how many changes the log keeps.
const defaultChangeLogSize = 1 << 16

// Bounds of a PolicyChanges answer.
const (
	defaultChangesLimit = 1000
	maxChangesLimit     = defaultChangeLogSize
)

func newChangeLog(size int) *changeLog {
	return &changeLog{size: size, ring: min(size, minChangeLog), start: 1}
}

// want is how many changes the log keeps while s holds what it holds.
func (l *changeLog) want(s *policyStore) int {
	return min(l.size, max(l.ring, s.len()/changeLogShare))
}

// grow lengthens a full ring to n entries, the oldest first. The caller
// has given the number of the change it is about to store.
func (l *changeLog) grow(n int) {
	have := len(l.entries)
	oldest := l.seq - uint64(have) // l.seq is the new change's
	i := int((oldest - l.start) % uint64(l.ring))
	grown := make([]rec, have, n)
	copy(grown, l.entries[i:])
	copy(grown[have-i:], l.entries[:i])
	l.entries, l.ring, l.start = grown, n, oldest
}

// change is what a change did to a policy.
type change uint8

const (
	changeMerged  change = 0
	changeAdded   change = change(flagAdded)
	changeRemoved change = change(flagRemoved)
)

// record appends the change of r. A nil log records nothing.
func (l *changeLog) record(s *policyStore, r prec, what change) {
	if l == nil {
		return
	}
	l.seq++
	s.strs.retain(r.reason)
	s.strs.retain(r.author)
	e := r.rec
	e.flags = e.flags&^(flagRemoved|flagAdded) | uint8(what)
	e.valueRef, e.extraRef = 0, 0
	if r.value != "" {
		e.valueRef = l.vals.put(r.value)
	}
	if r.x != nil {
		e.extraRef = l.extras.put(r.x)
	}
	if n := len(l.entries); n == l.ring {
		if want := l.want(s); want > n {
			// By a quarter at least, so that a store growing by a
			// bulk command at a time does not copy the ring each time.
			l.grow(min(l.size, max(want, n+n/4)))
		}
	}
	if n := len(l.entries); n < l.ring {
		if n == cap(l.entries) {
			// Grown by hand: append's growth would overshoot the ring.
			grown := make([]rec, n, min(l.ring, max(64, 2*n)))
			copy(grown, l.entries)
			l.entries = grown
		}
		l.entries = append(l.entries, e)
		return
	}
	i := int((l.seq - l.start) % uint64(l.ring))
	old := l.entries[i]
	s.strs.release(old.reason)
	s.strs.release(old.author)
	l.vals.release(old.valueRef)
	l.extras.release(old.extraRef)
	l.entries[i] = e
}

// reset empties the log after a restore: the changes before it no
// longer describe the state. The entries' strings belonged to the store
// the restore replaced.
func (l *changeLog) reset() {
	l.seq++
	l.start = l.seq + 1
	clear(l.entries)
	l.entries = l.entries[:0]
	l.vals, l.extras = slab[string]{}, slab[*recExtra]{}
}

// oldest is the number of the oldest change held (seq+1 when none is).
func (l *changeLog) oldest() uint64 {
	if n := uint64(len(l.entries)); n > 0 {
		return l.seq - n + 1
	}
	return l.seq + 1
}

// since returns up to limit changes after since, as PolicyChanges.
func (l *changeLog) since(s *policyStore, since uint64, limit int) ([]PolicyChange, uint64, bool) {
	if since > l.seq || since+1 < l.oldest() {
		return nil, l.seq, false
	}
	if limit <= 0 {
		limit = defaultChangesLimit
	}
	limit = min(limit, maxChangesLimit)
	n := min(uint64(limit), l.seq-since)
	if n == 0 {
		return nil, since, true
	}
	t := recTables{strs: s.strs.strs, vals: l.vals.items, extras: l.extras.items}
	out := make([]PolicyChange, 0, n)
	for k := since + 1; k <= since+n; k++ {
		e := l.entries[int((k-l.start)%uint64(l.ring))]
		what := change(e.flags & (flagRemoved | flagAdded))
		e.flags &^= flagRemoved | flagAdded
		r := t.view(e)
		out = append(out, PolicyChange{Seq: k, Policy: r.policy(t.strs), Removed: what == changeRemoved, Added: what == changeAdded})
	}
	return out, since + n, true
}
