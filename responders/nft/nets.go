package nft

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Networks either nest or are disjoint: an interval set cannot hold
// overlapping ranges, so the kernel holds the outermost of the wanted
// networks and the rest wait in f.nested until the network around them
// goes. A change to the networks costs what it touches, not what is held:
// whether a network lies inside a held one is a look-up per prefix length
// in use (netLens), and the networks inside one are a range of a sorted
// index (netIdx for the kernel's, nestedIdx for the nested ones).

// idxBulk is how many networks one batch may record before the sorted
// index is dropped and rebuilt when next needed, rather than kept entry
// by entry (an insertion moves the tail of the index).
const idxBulk = 64

func famOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func netKey(p netip.Prefix) string { return "cidr:" + p.String() }

// idxInsert and idxDelete keep a sorted index of prefixes.
func idxInsert(idx []netip.Prefix, p netip.Prefix) []netip.Prefix {
	i, found := slices.BinarySearchFunc(idx, p, comparePrefixes)
	if found {
		return idx
	}
	return slices.Insert(idx, i, p)
}

func idxDelete(idx []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if i, found := slices.BinarySearchFunc(idx, p, comparePrefixes); found {
		return slices.Delete(idx, i, i+1)
	}
	return idx
}

// idxInside returns the prefixes of idx strictly inside p.
func idxInside(idx []netip.Prefix, p netip.Prefix) []netip.Prefix {
	first := p.Masked().Addr()
	last := lastAddr(p)
	i, _ := slices.BinarySearchFunc(idx, netip.PrefixFrom(first, 0), comparePrefixes)
	var out []netip.Prefix
	for ; i < len(idx) && idx[i].Addr().Compare(last) <= 0; i++ {
		if q := idx[i]; q.Addr().BitLen() == first.BitLen() && q.Bits() > p.Bits() {
			out = append(out, q)
		}
	}
	return out
}

// netIndex returns the sorted index of the kernel's networks, building
// it if it was dropped.
func (s *state) netIndex() []netip.Prefix {
	if !s.netIdxOK {
		s.netIdx = s.netIdx[:0]
		for _, e := range s.nets {
			s.netIdx = append(s.netIdx, e.pfx)
		}
		slices.SortFunc(s.netIdx, comparePrefixes)
		s.netIdxOK = true
	}
	return s.netIdx
}

// covered reports whether a network of the kernel's holds ind: equals it
// or contains it.
func (s *state) covered(ind intel.Indicator) bool {
	p, ok := ind.Prefix()
	if !ok {
		return false
	}
	_, ok = s.coveringNet(p, p.Bits())
	return ok
}

// coveringNet returns the key of a network of the view whose length is
// at most maxBits and that contains p.
func (s *state) coveringNet(p netip.Prefix, maxBits int) (string, bool) {
	lens := &s.netLens[famOf(p)]
	for bits := 0; bits <= maxBits; bits++ {
		if lens[bits] == 0 {
			continue
		}
		k := netKey(netip.PrefixFrom(p.Addr(), bits).Masked())
		if _, ok := s.nets[k]; ok {
			return k, true
		}
	}
	return "", false
}

// nestedIndex returns the sorted index of the nested networks, building
// it if it was dropped.
func (f *Firewall) nestedIndex() []netip.Prefix {
	if !f.nestedIdxOK {
		f.nestedIdx = f.nestedIdx[:0]
		for _, p := range f.nested {
			pfx, _ := p.Indicator.Prefix()
			f.nestedIdx = append(f.nestedIdx, pfx)
		}
		slices.SortFunc(f.nestedIdx, comparePrefixes)
		f.nestedIdxOK = true
	}
	return f.nestedIdx
}

func (f *Firewall) setNested(p intel.Policy) {
	k := p.Indicator.Key()
	if _, ok := f.nested[k]; !ok && f.nestedIdxOK {
		pfx, _ := p.Indicator.Prefix()
		f.nestedIdx = idxInsert(f.nestedIdx, pfx)
	}
	f.nested[k] = p
}

func (f *Firewall) delNested(k string) {
	p, ok := f.nested[k]
	if !ok {
		return
	}
	delete(f.nested, k)
	if f.nestedIdxOK {
		pfx, _ := p.Indicator.Prefix()
		f.nestedIdx = idxDelete(f.nestedIdx, pfx)
	}
}

func (f *Firewall) clearNested() {
	clear(f.nested)
	f.nestedIdx, f.nestedIdxOK = f.nestedIdx[:0], true
}

// netPlan is the plan of the network changes of one Apply over the view:
// the networks to add to (or replace in) the kernel and to delete from
// it. The nested networks change at once.
type netPlan struct {
	f   *Firewall
	v   *state
	now time.Time
	add map[string]plannedNet
	del map[string]entry
	// addLens counts add by family and prefix length; promoted are the
	// keys of add that came from the nested networks (the only ones a
	// later addition can contain, as additions go widest first).
	addLens  [2][129]int
	promoted map[string]struct{}
}

func (pl *netPlan) planAdd(k string, a plannedNet) {
	if _, ok := pl.add[k]; !ok {
		pl.addLens[famOf(a.pfx)][a.pfx.Bits()]++
	}
	pl.add[k] = a
}

func (pl *netPlan) unplanAdd(k string) {
	if a, ok := pl.add[k]; ok {
		delete(pl.add, k)
		delete(pl.promoted, k)
		pl.addLens[famOf(a.pfx)][a.pfx.Bits()]--
	}
}

type plannedNet struct {
	p       intel.Policy
	pfx     netip.Prefix
	replace bool // the kernel holds the network: replace its element
}

// outer reports whether the network of key k is to be in the kernel.
func (pl *netPlan) outer(k string) bool {
	if _, ok := pl.add[k]; ok {
		return true
	}
	if _, ok := pl.del[k]; ok {
		return false
	}
	e, ok := pl.v.nets[k]
	return ok && e.alive(pl.now)
}

// coveredByOuter reports whether a network to be in the kernel strictly
// contains p.
func (pl *netPlan) coveredByOuter(p netip.Prefix) bool {
	fam := famOf(p)
	lens, planned := &pl.v.netLens[fam], &pl.addLens[fam]
	for bits := 0; bits < p.Bits(); bits++ {
		if (lens[bits] > 0 || planned[bits] > 0) && pl.outer(netKey(netip.PrefixFrom(p.Addr(), bits).Masked())) {
			return true
		}
	}
	return false
}

// demote moves the networks to be in the kernel that lie inside p to the
// nested ones: p is about to cover them.
func (pl *netPlan) demote(p netip.Prefix) {
	for _, q := range idxInside(pl.v.netIndex(), p) {
		k := netKey(q)
		if e, ok := pl.v.nets[k]; ok && pl.outer(k) {
			if _, planned := pl.add[k]; !planned {
				pl.del[k] = e
				pl.f.setNested(intel.Policy{Indicator: indOf(k), ExpiresAt: e.expiry()})
			}
		}
	}
	for k := range pl.promoted {
		a := pl.add[k]
		if a.pfx.Bits() > p.Bits() && a.pfx.Addr().BitLen() == p.Addr().BitLen() && p.Contains(a.pfx.Addr()) {
			pl.unplanAdd(k)
			if a.replace { // the kernel holds it: delete it now
				pl.del[k] = pl.v.nets[k]
			}
			pl.f.setNested(a.p)
		}
	}
}

// promote moves to the kernel the outermost nested networks inside p,
// which no longer covers them.
func (pl *netPlan) promote(p netip.Prefix) {
	var cur netip.Prefix
	for _, q := range idxInside(pl.f.nestedIndex(), p) {
		if cur.IsValid() && cur.Contains(q.Addr()) {
			continue // inside the one just promoted: stays nested
		}
		if pl.coveredByOuter(q) {
			continue
		}
		k := netKey(q)
		np, ok := pl.f.nested[k]
		if !ok {
			continue
		}
		pl.f.delNested(k)
		pl.put(k, np, q)
		pl.promoted[k] = struct{}{}
		cur = q
	}
}

// put plans network pfx (key k) of policy p into the kernel.
func (pl *netPlan) put(k string, p intel.Policy, pfx netip.Prefix) {
	e, held := pl.v.nets[k]
	if held && !e.alive(pl.now) { // the kernel has let it go already
		pl.v.delNet(k)
		held = false
	}
	delete(pl.del, k)
	pl.planAdd(k, plannedNet{p: p, pfx: pfx, replace: held})
}

// applyNets plans the network changes into b. It costs what the changes
// touch: look-ups by prefix length, and ranges of the sorted indexes.
func (f *Firewall) applyNets(b *batcher, v *state, add []intel.Policy, remove []intel.Indicator, now time.Time) error {
	pl := &netPlan{f: f, v: v, now: now, add: map[string]plannedNet{}, del: map[string]entry{}, promoted: map[string]struct{}{}}
	for _, ind := range remove {
		if ind.Type != intel.CIDR {
			continue
		}
		k := ind.Key()
		if _, ok := f.nested[k]; ok {
			f.delNested(k)
			continue
		}
		if a, ok := pl.add[k]; ok { // promoted earlier in this change
			pl.unplanAdd(k)
			if a.replace {
				pl.del[k] = v.nets[k]
			}
			pl.promote(a.pfx)
			continue
		}
		e, ok := v.nets[k]
		if !ok {
			continue
		}
		if _, deleting := pl.del[k]; deleting {
			continue
		}
		if e.alive(now) {
			pl.del[k] = e
		} else { // the kernel has let it go already
			v.delNet(k)
		}
		pl.promote(e.pfx)
	}
	// Additions go widest first (by start address, then length): a
	// network is then never added before one that contains it.
	type netAdd struct {
		p   intel.Policy
		pfx netip.Prefix
	}
	adds := make([]netAdd, 0, len(add))
	for _, p := range add {
		if p.Indicator.Type != intel.CIDR {
			continue
		}
		pfx, ok := p.Indicator.Prefix()
		if !ok {
			return fmt.Errorf("add %s: not a network", p.Indicator.Key())
		}
		adds = append(adds, netAdd{p, pfx.Masked()})
	}
	slices.SortFunc(adds, func(a, b netAdd) int { return comparePrefixes(a.pfx, b.pfx) })
	for _, na := range adds {
		p, pfx := na.p, na.pfx
		if _, ok := f.timeout(p, now); !ok {
			continue
		}
		k := p.Indicator.Key()
		if q, ok := f.nested[k]; ok {
			if pl.coveredByOuter(pfx) {
				if later(p, mkEntry(netip.Prefix{}, q.ExpiresAt)) {
					f.setNested(p)
				}
				continue
			}
			f.delNested(k) // no longer covered: to the kernel
		} else if a, ok := pl.add[k]; ok {
			if later(p, mkEntry(netip.Prefix{}, a.p.ExpiresAt)) {
				a.p = p
				pl.add[k] = a
			}
			continue
		} else if pl.outer(k) {
			if later(p, v.nets[k]) {
				pl.planAdd(k, plannedNet{p: p, pfx: pfx, replace: true})
			}
			continue
		}
		if pl.coveredByOuter(pfx) {
			f.setNested(p)
			continue
		}
		pl.demote(pfx)
		pl.put(k, p, pfx)
	}
	for k, e := range pl.del {
		b.queue(op{kind: opDel, set: netSetIndex(e.pfx), key: k, ent: e})
	}
	for k, a := range pl.add {
		to, ok := f.timeout(a.p, now)
		if !ok {
			continue
		}
		kind := opAdd
		if a.replace {
			kind = opReplace
		}
		b.queue(op{kind: kind, set: netSetIndex(a.pfx), key: k, to: to, ent: mkEntry(a.pfx, expiry(now, to))})
	}
	return nil
}
