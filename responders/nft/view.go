package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders"
)

// Current implements responders.Backend. It answers from the view,
// after checking the ruleset generation; when that shows another writer
// (or a full read is due, see WithFullReadEvery), it first recreates
// whatever part of the table's structure is missing and reads the sets
// back. It copies every element; the reconciler asks Compare instead.
func (f *Firewall) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	now := f.cfg.now()
	if err := f.sync(f.fullDue(now)); err != nil {
		return nil, err
	}
	v := f.view
	v.prune(now)
	out := make(map[string]intel.Indicator, len(v.addrs)+len(v.nets)+len(f.nested))
	for k := range v.addrs {
		ind := intel.IndicatorFromAddr(k.addr())
		out[ind.Key()] = ind
	}
	for k := range v.nets {
		out[k] = indOf(k)
	}
	for k, p := range f.nested {
		if v.covered(p.Indicator) {
			out[k] = p.Indicator
		}
	}
	return out, nil
}

// fullDue counts a Current or Compare call and reports whether a full
// read is due under WithFullReadEvery. Without that option it never is:
// the ruleset generation, which the kernel advances on every committed
// transaction in the namespace (any table's, any writer's), is checked on
// every call and before every batch, and the only changes to the sets
// that do not pass through a transaction are the kernel's own element
// expiries, which the view mirrors. A full read of a million elements
// costs seconds; a periodic one would only repeat what the generation
// already vouches for.
func (f *Firewall) fullDue(now time.Time) bool {
	f.sinceFull++
	if f.cfg.fullEvery == 0 {
		return false
	}
	return f.sinceFull >= f.cfg.fullEvery || now.Sub(f.lastFull) >= f.cfg.fullAfter
}

// Compare implements responders.Comparer from the view, after the same
// check as Current, without copying it. Unless the comparison must be
// thorough, it first compares the digest of the view's keys (kept change
// by change) with the desired set's: when they match there is nothing to
// do, and a pass over a million entries costs the generation check.
// Otherwise it looks each desired address and network up (about half a
// second for a million, memory bound), and walks the view only when it
// holds entries the desired set does not match (a removal is due, or
// expired entries wait to be dropped).
func (f *Firewall) Compare(ctx context.Context, desired responders.DesiredSet) (add []intel.Policy, remove []intel.Indicator, refresh []intel.Policy, err error) {
	if err := f.lock(); err != nil {
		return nil, nil, nil, err
	}
	defer f.mu.Unlock()
	now := f.cfg.now()
	if err := f.sync(f.fullDue(now)); err != nil {
		return nil, nil, nil, err
	}
	v := f.view
	covered := make(map[string]bool, len(f.nested))
	have := v.dig
	for k, p := range f.nested {
		if covered[k] = v.covered(p.Indicator); covered[k] {
			have.Add(k)
		}
	}
	if !desired.Thorough() && have == desired.Digest(f.Supports) {
		f.digestMatches.Add(1)
		return nil, nil, nil, nil
	}
	if have.N == 0 { // nothing held (a first pass): no look-ups
		add = make([]intel.Policy, 0, desired.Len())
		for _, p := range desired.All() {
			if f.Supports(p.Indicator.Type) {
				add = append(add, *p)
			}
		}
		return add, nil, nil, nil
	}
	matched := 0
	for k, p := range desired.All() {
		var e entry
		var ok bool
		switch p.Indicator.Type {
		case intel.IPv4, intel.IPv6:
			if a, valid := addrOf(p.Indicator); valid {
				e, ok = v.addr(a)
				ok = ok && e.alive(now)
			}
		case intel.CIDR:
			if e, ok = v.nets[k]; ok {
				ok = e.alive(now)
			} else if q, in := f.nested[k]; in && covered[k] {
				e, ok = mkEntry(netip.Prefix{}, q.ExpiresAt), true
			}
		default:
			continue
		}
		if !ok {
			add = append(add, *p)
			continue
		}
		matched++
		if later(*p, e) {
			refresh = append(refresh, *p)
		}
	}
	nested := 0
	for _, c := range covered {
		if c {
			nested++
		}
	}
	if matched == len(v.addrs)+len(v.nets)+nested {
		return add, nil, refresh, nil
	}
	t := now.UnixNano()
	for k, exp := range v.addrs {
		if a := k.addr(); exp != 0 && exp <= t {
			v.delAddr(a)
		} else if ind := intel.IndicatorFromAddr(a); !desired.Has(ind.Key()) {
			remove = append(remove, ind)
		}
	}
	for k, e := range v.nets {
		if !e.alive(now) {
			v.delNet(k)
		} else if !desired.Has(k) {
			remove = append(remove, indOf(k))
		}
	}
	for k, p := range f.nested {
		if !desired.Has(k) && covered[k] {
			remove = append(remove, p.Indicator)
		}
	}
	return add, remove, refresh, nil
}

// sync makes f.view current: it keeps it if the ruleset generation is the
// one recorded after the backend's own last change and full is false;
// otherwise it repairs the structure and reads the sets back.
func (f *Firewall) sync(full bool) error {
	g, err := f.generation()
	if err != nil {
		return err
	}
	if f.view != nil && !f.dirty {
		if g == f.gen && !full {
			f.viewReads.Add(1)
			return nil
		}
		if g != f.gen {
			f.drifts.Add(1)
		}
	}
	f.view = nil
	if err := f.ensure(); err != nil {
		return err
	}
	// The generation is taken before the dump: a change committed during
	// the dump shows as a different generation at the next check.
	if g, err = f.generation(); err != nil {
		return err
	}
	st, err := f.read()
	if err != nil {
		return err
	}
	f.view, f.gen, f.dirty = st, g, false
	f.sinceFull, f.lastFull = 0, f.cfg.now()
	f.fullReads.Add(1)
	return nil
}

// generation returns the kernel's ruleset generation, which every
// committed nftables transaction in the namespace advances.
func (f *Firewall) generation() (uint32, error) {
	c, err := f.nlConn()
	if err != nil {
		return 0, fmt.Errorf("ruleset generation: %w", err)
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		f.errs.Add(1)
		f.dropConn()
		return 0, fmt.Errorf("read the ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("decode the ruleset generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("decode the ruleset generation: %w", err)
		}
	}
	return 0, errNoGeneration
}

// state is what the kernel's sets hold. Single addresses, of which
// there may be millions, are keyed by address (a canonical one: unmapped,
// no zone) with only their expiry, so that the view costs one small map
// slot and no string each.
type state struct {
	// addrs holds each address in its 16-byte form (IPv4 mapped), which
	// has no pointer: the garbage collector never scans the map.
	addrs map[addrKey]int64 // expiry in Unix nanoseconds; zero: no timeout
	nets  map[string]entry  // the interval sets' elements, by key
	// netLens counts nets by family (IPv4, IPv6) and prefix length;
	// netIdx is their prefixes sorted, when netIdxOK (nets.go).
	netLens  [2][129]int
	netIdx   []netip.Prefix
	netIdxOK bool
	// dig is the digest of the keys (Indicator.Key) of addrs and nets,
	// kept by setAddr, delAddr, setNet and delNet, through which every
	// change to them goes.
	dig responders.Digest
}

func newState() *state {
	return &state{addrs: map[addrKey]int64{}, nets: map[string]entry{}}
}

// addrKey is an address in the view: its 16-byte form.
type addrKey [16]byte

func keyOf(a netip.Addr) addrKey { return a.As16() }

// addr is the canonical address of k (IPv4 unmapped).
func (k addrKey) addr() netip.Addr { return netip.AddrFrom16(k).Unmap() }

// addrHash is the KeyHash of the indicator key of a, built without
// allocating.
func addrHash(a netip.Addr) uint64 {
	var buf [64]byte
	b := buf[:0]
	if a.Is4() {
		b = append(b, "ipv4:"...)
	} else {
		b = append(b, "ipv6:"...)
	}
	return responders.KeyHashBytes(a.AppendTo(b))
}

// addrOf is the canonical address of an address indicator.
func addrOf(ind intel.Indicator) (netip.Addr, bool) {
	a, err := netip.ParseAddr(ind.Value)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// addr returns the element of a, if held.
func (s *state) addr(a netip.Addr) (entry, bool) {
	exp, ok := s.addrs[keyOf(a)]
	return entry{pfx: netip.PrefixFrom(a, a.BitLen()), expires: exp}, ok
}

func (s *state) setAddr(a netip.Addr, expires int64) {
	n := len(s.addrs)
	s.addrs[keyOf(a)] = expires
	if len(s.addrs) > n {
		s.dig.AddHash(addrHash(a))
	}
}

func (s *state) delAddr(a netip.Addr) {
	n := len(s.addrs)
	delete(s.addrs, keyOf(a))
	if len(s.addrs) < n {
		s.dig.RemoveHash(addrHash(a))
	}
}

func (s *state) setNet(k string, e entry) {
	n := len(s.nets)
	s.nets[k] = e
	if len(s.nets) > n {
		s.dig.Add(k)
		s.netLens[famOf(e.pfx)][e.pfx.Bits()]++
		if s.netIdxOK {
			s.netIdx = idxInsert(s.netIdx, e.pfx)
		}
	}
}

func (s *state) delNet(k string) {
	e, ok := s.nets[k]
	if !ok {
		return
	}
	delete(s.nets, k)
	s.dig.Remove(k)
	s.netLens[famOf(e.pfx)][e.pfx.Bits()]--
	if s.netIdxOK {
		s.netIdx = idxDelete(s.netIdx, e.pfx)
	}
}

// entry is one element of a set: an address or a network, and its
// expiry. A network's indicator is its key's (indOf).
type entry struct {
	pfx     netip.Prefix // the network, or the address as a full-length prefix
	expires int64        // Unix nanoseconds; zero: no timeout
}

func mkEntry(pfx netip.Prefix, expires time.Time) entry {
	e := entry{pfx: pfx}
	if !expires.IsZero() {
		e.expires = expires.UnixNano()
	}
	return e
}

// expiry is the element's expiry (zero: none).
func (e entry) expiry() time.Time {
	if e.expires == 0 {
		return time.Time{}
	}
	return time.Unix(0, e.expires)
}

func (e entry) alive(now time.Time) bool { return e.expires == 0 || e.expires > now.UnixNano() }

// indOf is the indicator of a view key ("type:value"), sharing its
// memory.
func indOf(key string) intel.Indicator {
	i := strings.IndexByte(key, ':')
	return intel.Indicator{Type: intel.IndicatorType(key[:i]), Value: key[i+1:]}
}

// prune drops the elements the kernel has expired by now.
func (s *state) prune(now time.Time) {
	t := now.UnixNano()
	for k, exp := range s.addrs {
		if exp != 0 && exp <= t {
			s.delAddr(k.addr())
		}
	}
	for k, e := range s.nets {
		if !e.alive(now) {
			s.delNet(k)
		}
	}
}

// read reads the sets back from the kernel.
func (f *Firewall) read() (*state, error) {
	st := newState()
	now := f.cfg.now()
	for _, name := range []string{setV4, setV6} {
		els, err := f.stableElements(f.sets[name])
		if err != nil {
			return nil, err
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			var exp int64
			if e.Timeout > 0 {
				exp = now.Add(e.Expires).UnixNano()
			}
			st.setAddr(a.Unmap().WithZone(""), exp)
		}
	}
	for _, name := range []string{setV4Net, setV6Net} {
		els, err := f.stableElements(f.sets[name])
		if err != nil {
			return nil, err
		}
		for _, r := range ranges(els) {
			ind := intel.Indicator{Type: intel.CIDR, Value: r.pfx.String()}
			ent := entry{pfx: r.pfx}
			if r.timeout > 0 {
				ent = mkEntry(r.pfx, now.Add(r.expires))
			}
			st.setNet(ind.Key(), ent)
		}
	}
	return st, nil
}

// A dump of a set larger than one netlink message resumes by position, so
// one that overlaps a resize of the kernel's hash table (which runs
// deferred, after a large insert) can skip some elements and repeat
// others. A dump with a repeated element is therefore read again.
const maxDumps = 5

func (f *Firewall) stableElements(s *nftables.Set) ([]nftables.SetElement, error) {
	var els []nftables.SetElement
	for range maxDumps {
		var err error
		els, err = f.conn.GetSetElements(s)
		if err != nil {
			f.errs.Add(1)
			return nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		keys := make(map[string]struct{}, len(els))
		for _, e := range els {
			keys[elemKey(e)] = struct{}{}
		}
		if len(keys) == len(els) {
			return els, nil
		}
		f.unstable.Add(1)
	}
	return els, nil
}

func elemKey(e nftables.SetElement) string {
	if e.IntervalEnd {
		return "e" + string(e.Key)
	}
	return "s" + string(e.Key)
}

type netRange struct {
	pfx              netip.Prefix
	timeout, expires time.Duration
}

// ranges pairs the start and end elements of an interval set (the kernel
// dumps them in any order) and returns those that form a prefix.
func ranges(els []nftables.SetElement) []netRange {
	type el struct {
		a                netip.Addr
		end              bool
		timeout, expires time.Duration
	}
	list := make([]el, 0, len(els))
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		list = append(list, el{a, e.IntervalEnd, e.Timeout, e.Expires})
	}
	slices.SortFunc(list, func(x, y el) int {
		if c := x.a.Compare(y.a); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		}
		return 1
	})
	var out []netRange
	for i, e := range list {
		if e.end {
			continue
		}
		var next netip.Addr // zero: open to the top
		if i+1 < len(list) && list[i+1].end {
			next = list[i+1].a
		}
		if pfx, ok := rangePrefix(e.a, next); ok {
			out = append(out, netRange{pfx, e.timeout, e.expires})
		}
	}
	return out
}

// rangePrefix returns the prefix covering exactly [first, end), where an
// invalid end means the top of the address space.
func rangePrefix(first, end netip.Addr) (netip.Prefix, bool) {
	for bits := first.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			break
		}
		next := lastAddr(p).Next()
		if next == end || (!end.IsValid() && !next.IsValid()) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Holds implements responders.Holder from the view, after the same check
// as Current.
func (f *Firewall) Holds(ctx context.Context, ind intel.Indicator) (bool, error) {
	if err := f.lock(); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	now := f.cfg.now()
	if err := f.sync(false); err != nil {
		return false, err
	}
	v := f.view
	switch ind.Type {
	case intel.IPv4, intel.IPv6:
		a, ok := addrOf(ind)
		if !ok {
			return false, nil
		}
		e, held := v.addr(a)
		return held && e.alive(now), nil
	case intel.CIDR:
		k := ind.Key()
		if e, held := v.nets[k]; held {
			return e.alive(now), nil
		}
		_, nested := f.nested[k]
		return nested && v.covered(ind), nil
	}
	return false, nil
}
