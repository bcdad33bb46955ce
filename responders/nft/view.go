package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/meshward/meshward/intel"
)

// Current implements responders.Backend. It answers from the view,
// after checking the ruleset generation; when that shows another writer,
// or a full read is due, it first recreates whatever part of the table's
// structure is missing and reads the sets back.
func (f *Firewall) Current(ctx context.Context) (map[string]intel.Indicator, error) {
	if err := f.lock(); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	now := f.cfg.now()
	f.sinceFull++
	due := f.sinceFull >= f.cfg.fullEvery || now.Sub(f.lastFull) >= f.cfg.fullAfter
	if err := f.sync(due); err != nil {
		return nil, err
	}
	v := f.view
	v.prune(now)
	out := make(map[string]intel.Indicator, len(v.addrs)+len(v.nets)+len(f.nested))
	for k, e := range v.addrs {
		out[k] = e.ind
	}
	for k, e := range v.nets {
		out[k] = e.ind
	}
	for k, p := range f.nested {
		if v.covered(p.Indicator) {
			out[k] = p.Indicator
		}
	}
	return out, nil
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
	if f.genConn == nil {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: f.cfg.netns})
		if err != nil {
			f.errs.Add(1)
			return 0, fmt.Errorf("open netlink for the ruleset generation: %w", err)
		}
		f.genConn = c
	}
	msgs, err := f.genConn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		f.errs.Add(1)
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
	return 0, errors.New("read the ruleset generation: no generation in the reply")
}

// state is what the kernel's sets hold.
type state struct {
	addrs map[string]entry
	nets  map[string]entry // the interval sets' elements
}

// entry is one element of a set.
type entry struct {
	ind     intel.Indicator
	pfx     netip.Prefix // of a network
	expires time.Time    // zero: no timeout
}

func (e entry) alive(now time.Time) bool { return e.expires.IsZero() || e.expires.After(now) }

// prune drops the elements the kernel has expired by now.
func (s *state) prune(now time.Time) {
	for _, m := range []map[string]entry{s.addrs, s.nets} {
		maps.DeleteFunc(m, func(_ string, e entry) bool { return !e.alive(now) })
	}
}

// covered reports whether a network in the kernel contains ind.
func (s *state) covered(ind intel.Indicator) bool {
	p, ok := ind.Prefix()
	if !ok {
		return false
	}
	for _, e := range s.nets {
		if q := e.pfx; q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// read reads the sets back from the kernel.
func (f *Firewall) read() (*state, error) {
	st := &state{addrs: map[string]entry{}, nets: map[string]entry{}}
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
			ind := intel.IndicatorFromAddr(a)
			ent := entry{ind: ind}
			if e.Timeout > 0 {
				ent.expires = now.Add(e.Expires)
			}
			st.addrs[ind.Key()] = ent
		}
	}
	for _, name := range []string{setV4Net, setV6Net} {
		els, err := f.stableElements(f.sets[name])
		if err != nil {
			return nil, err
		}
		for _, r := range ranges(els) {
			ind := intel.Indicator{Type: intel.CIDR, Value: r.pfx.String()}
			ent := entry{ind: ind, pfx: r.pfx}
			if r.timeout > 0 {
				ent.expires = now.Add(r.expires)
			}
			st.nets[ind.Key()] = ent
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
