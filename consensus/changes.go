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
// The entries hold records and keep their reason and author strings in
// the store's table (counted references).
type changeLog struct {
	entries []changeEntry // a ring, grown up to size
	size    int
	seq     uint64 // the last number given
	start   uint64 // the number of entries[0] when the ring was last emptied
}

type changeEntry struct {
	seq     uint64
	r       prec // with its own value and recExtra: the slots may be reused
	removed bool
}

// defaultChangeLogSize is how many changes the log keeps.
const defaultChangeLogSize = 1 << 16

// Bounds of a PolicyChanges answer.
const (
	defaultChangesLimit = 1000
	maxChangesLimit     = defaultChangeLogSize
)

func newChangeLog(size int) *changeLog {
	return &changeLog{size: size, start: 1}
}

// record appends the change of r. A nil log records nothing.
func (l *changeLog) record(s *policyStore, r prec, removed bool) {
	if l == nil {
		return
	}
	l.seq++
	s.strs.retain(r.reason)
	s.strs.retain(r.author)
	e := changeEntry{seq: l.seq, r: r, removed: removed}
	if len(l.entries) < l.size {
		l.entries = append(l.entries, e)
		return
	}
	i := int((l.seq - l.start) % uint64(l.size))
	old := l.entries[i]
	s.strs.release(old.r.reason)
	s.strs.release(old.r.author)
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
	out := make([]PolicyChange, 0, n)
	for k := since + 1; k <= since+n; k++ {
		e := &l.entries[int((k-l.start)%uint64(l.size))]
		out = append(out, PolicyChange{Seq: e.seq, Policy: e.r.policy(s.strs.strs), Removed: e.removed})
	}
	return out, since + n, true
}
