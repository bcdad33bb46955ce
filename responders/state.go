package responders

import (
	"cmp"
	"container/heap"
	"iter"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// held is one policy the reconciler holds: a mesh-wide policy or a local
// decision, active when it was taken in.
type held struct {
	p     intel.Policy
	local bool
	key   string // p.Indicator.Key()
	block bool   // a valid, canonical block: indexed in byKey
	allow bool   // an allow: part of the veto
	hi    int    // index in the expiry heap; -1 when not in it
	mark  uint64 // the last resync that saw it
}

// expiries is a min-heap of held policies by expiry (container/heap).
type expiries []*held

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].p.ExpiresAt.Before(e[j].p.ExpiresAt) }
func (e expiries) Swap(i, j int) {
	e[i], e[j] = e[j], e[i]
	e[i].hi, e[j].hi = i, j
}
func (e *expiries) Push(x any) {
	h := x.(*held)
	h.hi = len(*e)
	*e = append(*e, h)
}
func (e *expiries) Pop() any {
	old := *e
	h := old[len(old)-1]
	old[len(old)-1] = nil
	*e = old[:len(old)-1]
	h.hi = -1
	return h
}

// desiredState is the reconciler's model of what must be blocked, kept up
// to date by changes: every held policy by ID, the blocks by indicator
// key, the allows and protected ranges that veto them, and the chosen
// policy of every key that must be blocked (desired). A change marks the
// keys it may affect as dirty; settle recomputes only those. Expiries
// wait in a heap, so that the policies expiring at a pass cost O(log n)
// each, not a scan of every policy.
//
// Allow policies and protected ranges are expected to be few: a change
// to a network or domain allow, or to the protected ranges, rechecks
// every held block it could overlap (a scan), where a block change costs
// a constant number of map operations.
type desiredState struct {
	log *slog.Logger

	mesh, local map[string]*held    // by policy ID
	byKey       map[string][]*held  // valid blocks by indicator key
	wide        map[string]struct{} // keys in byKey that are not single addresses
	allows      map[string][]*held  // allows by indicator key
	veto        veto                // built from allows and protected
	vetoStale   bool
	protected   []netip.Prefix
	desired     map[string]*held // the block enforced for each key
	digests     typeDigests      // of desired's keys
	exp         expiries

	dirty    map[string]struct{}
	allDirty bool
	resyncs  uint64 // resyncs begun: the mark of the current one
	// changed allows since the last settle, whose overlapping blocks
	// must be rechecked.
	allowAddrs, allowWide []intel.Indicator
}

func newDesiredState(log *slog.Logger) *desiredState {
	return &desiredState{
		log:     log,
		mesh:    make(map[string]*held),
		local:   make(map[string]*held),
		byKey:   make(map[string][]*held),
		wide:    make(map[string]struct{}),
		allows:  make(map[string][]*held),
		desired: make(map[string]*held),
		digests: make(typeDigests),
		dirty:   make(map[string]struct{}),
	}
}

func (s *desiredState) ids(local bool) map[string]*held {
	if local {
		return s.local
	}
	return s.mesh
}

// put holds p (replacing the policy of the same ID from the same side),
// unless it is no longer active at now, in which case the policy of that
// ID is dropped.
func (s *desiredState) put(p intel.Policy, local bool, now time.Time) {
	if old, ok := s.ids(local)[p.ID]; ok {
		s.drop(old)
	}
	if !p.Active(now) {
		return
	}
	p.Evidence = nil // no backend needs it; a million policies would hold it all
	h := &held{p: p, local: local, key: p.Indicator.Key(), hi: -1}
	s.ids(local)[p.ID] = h
	if !p.ExpiresAt.IsZero() {
		heap.Push(&s.exp, h)
	}
	switch p.Action {
	case intel.ActionBlock:
		// A malformed indicator cannot be enforced, and handing it to a
		// backend could fail the whole batch it travels in.
		if p.Indicator.Validate() != nil {
			return
		}
		h.block = true
		s.byKey[h.key] = append(s.byKey[h.key], h)
		if !isAddr(p.Indicator) {
			s.wide[h.key] = struct{}{}
		}
		s.dirty[h.key] = struct{}{}
	case intel.ActionAllow:
		h.allow = true
		s.allows[h.key] = append(s.allows[h.key], h)
		s.allowChanged(p.Indicator)
	}
}

// remove drops the policy of that ID, if held.
func (s *desiredState) remove(id string, local bool) {
	if h, ok := s.ids(local)[id]; ok {
		s.drop(h)
	}
}

func (s *desiredState) drop(h *held) {
	delete(s.ids(h.local), h.p.ID)
	if h.hi >= 0 {
		heap.Remove(&s.exp, h.hi)
	}
	switch {
	case h.block:
		list := slices.DeleteFunc(s.byKey[h.key], func(x *held) bool { return x == h })
		if len(list) == 0 {
			delete(s.byKey, h.key)
			delete(s.wide, h.key)
		} else {
			s.byKey[h.key] = list
		}
		s.dirty[h.key] = struct{}{}
	case h.allow:
		list := slices.DeleteFunc(s.allows[h.key], func(x *held) bool { return x == h })
		if len(list) == 0 {
			delete(s.allows, h.key)
		} else {
			s.allows[h.key] = list
		}
		s.allowChanged(h.p.Indicator)
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

// expire drops every policy that is no longer active at now.
func (s *desiredState) expire(now time.Time) {
	for len(s.exp) > 0 && !s.exp[0].p.Active(now) {
		s.drop(s.exp[0])
	}
}

// nextExpiry is the earliest expiry of a held policy (zero: none).
func (s *desiredState) nextExpiry() time.Time {
	if len(s.exp) == 0 {
		return time.Time{}
	}
	return s.exp[0].p.ExpiresAt
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
// sees is marked with the resync's number; end drops the unmarked.
type resyncer struct {
	s     *desiredState
	local bool
	now   time.Time
	mark  uint64
}

// beginResync starts a resync of one side. sizeHint, the number of
// policies expected, sizes the maps that are still empty when the side
// holds nothing yet (a first read of a million policies would otherwise
// grow them step by step). The dirty set is not sized: a map costs its
// capacity to iterate, and settle iterates it on every pass.
func (s *desiredState) beginResync(local bool, now time.Time, sizeHint int) *resyncer {
	if sizeHint > 1024 && len(s.ids(local)) == 0 {
		if local {
			s.local = make(map[string]*held, sizeHint)
		} else {
			s.mesh = make(map[string]*held, sizeHint)
		}
		if len(s.byKey) == 0 {
			s.byKey = make(map[string][]*held, sizeHint)
		}
		if len(s.desired) == 0 {
			s.desired = make(map[string]*held, sizeHint)
		}
	}
	s.resyncs++
	return &resyncer{s: s, local: local, now: now, mark: s.resyncs}
}

func (r *resyncer) take(list []intel.Policy) {
	m := r.s.ids(r.local)
	for _, p := range list {
		if h, ok := m[p.ID]; ok && samePolicy(h.p, p) {
			h.mark = r.mark
			continue
		}
		r.s.put(p, r.local, r.now)
		if h, ok := m[p.ID]; ok {
			h.mark = r.mark
		}
	}
}

// end drops the policies no part held.
func (r *resyncer) end() {
	for _, h := range r.s.ids(r.local) {
		if h.mark != r.mark {
			r.s.drop(h)
		}
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
// when lists is set.
func (s *desiredState) settle(lists bool) delta {
	if s.vetoStale {
		s.rebuildVeto()
	}
	if s.allDirty {
		for k := range s.byKey {
			s.dirty[k] = struct{}{}
		}
		for k := range s.desired {
			s.dirty[k] = struct{}{}
		}
	} else {
		for _, a := range s.allowAddrs {
			s.dirty[a.Key()] = struct{}{}
		}
		s.markOverlapping(maps.Keys(s.wide), s.allowAddrs)
		s.markOverlapping(maps.Keys(s.byKey), s.allowWide)
	}
	s.allDirty, s.allowAddrs, s.allowWide = false, nil, nil
	var d delta
	if lists && len(s.dirty) > 64 {
		d.add = make([]intel.Policy, 0, len(s.dirty))
	}
	for k := range s.dirty {
		cur, below := s.choose(k)
		if below {
			d.belowFloor++
		}
		old, had := s.desired[k]
		switch {
		case cur == nil && had:
			delete(s.desired, k)
			s.digests.remove(old.p.Indicator, k)
			if lists {
				d.remove = append(d.remove, old.p.Indicator)
			}
		case cur == nil:
		case !had:
			s.desired[k] = cur
			s.digests.add(cur.p.Indicator, k)
			if lists {
				d.add = append(d.add, cur.p)
			}
		case cur != old:
			s.desired[k] = cur
			if !samePolicy(cur.p, old.p) {
				d.refresh = append(d.refresh, cur.p)
			}
		}
	}
	if len(s.dirty) > 1024 {
		// Iterating a map costs its capacity, which clear keeps: the
		// set of a first pass would slow every later one.
		s.dirty = make(map[string]struct{})
	} else {
		clear(s.dirty)
	}
	sortPolicies(d.add)
	sortPolicies(d.refresh)
	sortIndicators(d.remove)
	return d
}

// markOverlapping marks dirty every key of keys whose held block
// overlaps one of inds: one scan of keys, and none when inds is empty.
func (s *desiredState) markOverlapping(keys iter.Seq[string], inds []intel.Indicator) {
	if len(inds) == 0 {
		return
	}
	for k := range keys {
		list := s.byKey[k]
		if len(list) == 0 {
			continue
		}
		ind := list[0].p.Indicator
		for _, a := range inds {
			if ind.Overlaps(a) {
				s.dirty[k] = struct{}{}
				break
			}
		}
	}
}

// rebuildVeto rebuilds the veto from the held allows and protected
// ranges.
func (s *desiredState) rebuildVeto() {
	v := veto{protected: s.protected}
	for _, list := range s.allows {
		v.add(list[0].p.Indicator)
	}
	s.veto, s.vetoStale = v, false
}

// choose returns the block to enforce for key, nil when there is none:
// the held block that lasts longest (a mesh policy, then the lower ID, on
// a tie), unless an allow or a protected range covers the indicator or a
// safety floor refuses it (below).
func (s *desiredState) choose(key string) (best *held, below bool) {
	for _, h := range s.byKey[key] {
		if best == nil || outlasts(h.p, best.p) ||
			(!outlasts(best.p, h.p) && (best.local && !h.local || best.local == h.local && h.p.ID < best.p.ID)) {
			best = h
		}
	}
	if best == nil || s.veto.covers(best.p.Indicator) {
		return nil, false
	}
	if err := floors.CheckBlock(best.p.Indicator, true); err != nil {
		s.log.Debug("desired block dropped by a safety floor", "policy", best.p.ID, "indicator", best.p.Indicator.Value, "err", err)
		return nil, true
	}
	return best, false
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
// read-only, and valid only during the call it is passed to.
type DesiredSet struct {
	m        map[string]*held
	digests  typeDigests
	thorough bool
}

// NewDesiredSet returns the desired set of ps, keyed by their indicators'
// keys (a later policy replaces an earlier one of the same key). It is
// for tests and tools; the reconciler hands backends its own. thorough
// is what Thorough reports.
func NewDesiredSet(ps []intel.Policy, thorough bool) DesiredSet {
	m := make(map[string]*held, len(ps))
	for _, p := range ps {
		k := p.Indicator.Key()
		m[k] = &held{p: p, key: k, hi: -1}
	}
	d := make(typeDigests)
	for k, h := range m {
		d.add(h.p.Indicator, k)
	}
	return DesiredSet{m: m, digests: d, thorough: thorough}
}

// Digest is the digest of the keys of the indicator types supports
// accepts (nil: every type).
func (d DesiredSet) Digest(supports func(intel.IndicatorType) bool) Digest {
	var out Digest
	for t, dg := range d.digests {
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
func (d DesiredSet) Len() int { return len(d.m) }

// Has reports whether key is desired.
func (d DesiredSet) Has(key string) bool {
	_, ok := d.m[key]
	return ok
}

// Get returns the policy of key. The policy must not be modified.
func (d DesiredSet) Get(key string) (*intel.Policy, bool) {
	h, ok := d.m[key]
	if !ok {
		return nil, false
	}
	return &h.p, true
}

// All yields every entry, in no particular order. The policies must not
// be modified.
func (d DesiredSet) All() iter.Seq2[string, *intel.Policy] {
	return func(yield func(string, *intel.Policy) bool) {
		for k, h := range d.m {
			if !yield(k, &h.p) {
				return
			}
		}
	}
}
