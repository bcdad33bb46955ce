package nft

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshward/meshward/intel"
)

// Apply implements responders.Backend. Elements travel in batches of the
// configured size, one Flush each; on error the batches already sent stay
// applied. An element already held with an earlier expiry than its
// policy's is replaced (deleted and re-added in one batch).
func (f *Firewall) Apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	if err := f.lock(); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if err := f.sync(false); err != nil {
		return err
	}
	return f.apply(ctx, add, remove)
}

// Refresh extends the kernel timeout of every held element whose policy
// in held expires later than the element (by more than a second), and
// returns how many it replaced. Policies whose indicators are not held
// are ignored: adding is Apply's business. A reconciler calls it once per
// pass with the desired policies Current reported, since Apply only
// receives the missing ones.
func (f *Firewall) Refresh(ctx context.Context, held []intel.Policy) (int, error) {
	if err := f.lock(); err != nil {
		return 0, err
	}
	defer f.mu.Unlock()
	if err := f.sync(false); err != nil {
		return 0, err
	}
	now := f.cfg.now()
	v := f.view
	var ext []intel.Policy
	for _, p := range held {
		switch p.Indicator.Type {
		case intel.IPv4, intel.IPv6:
			if a, ok := addrOf(p.Indicator); ok {
				if e, ok := v.addr(a); ok && e.alive(now) && later(p, e) {
					ext = append(ext, p)
				}
			}
		case intel.CIDR:
			k := p.Indicator.Key()
			if e, ok := v.nets[k]; ok && e.alive(now) && later(p, e) {
				ext = append(ext, p)
			} else if q, ok := f.nested[k]; ok && later(p, mkEntry(netip.Prefix{}, q.ExpiresAt)) {
				ext = append(ext, p)
			}
		}
	}
	if len(ext) == 0 {
		return 0, nil
	}
	before := f.refreshed.Load()
	err := f.apply(ctx, ext, nil)
	return int(f.refreshed.Load() - before), err
}

// later reports whether p should replace the element e: p never expires
// while e does, or p expires more than refreshSlack after e.
func later(p intel.Policy, e entry) bool {
	if e.expires == 0 {
		return false
	}
	return p.ExpiresAt.IsZero() || p.ExpiresAt.After(e.expiry().Add(refreshSlack))
}

// apply plans the change against the view and sends it. f.view is valid.
// It costs what it is given, not what the view holds: elements the view
// shows expired are treated as absent (and dropped from it when removed),
// instead of pruning the whole view first.
func (f *Firewall) apply(ctx context.Context, add []intel.Policy, remove []intel.Indicator) error {
	v := f.view
	now := f.cfg.now()
	b := batcher{f: f}

	// Single addresses: remove only what is held (deleting an absent
	// element fails the whole batch); add what is not held, and replace
	// what is held with an earlier expiry.
	nets := false
	for _, ind := range remove {
		if ind.Type != intel.IPv4 && ind.Type != intel.IPv6 {
			nets = nets || ind.Type == intel.CIDR
			continue
		}
		a, ok := addrOf(ind)
		if !ok {
			continue
		}
		e, ok := v.addr(a)
		if !ok {
			continue
		}
		if !e.alive(now) { // the kernel has let it go already
			v.delAddr(a)
			continue
		}
		b.queue(op{kind: opDel, set: addrSetIndex(a), ent: e})
	}
	if len(v.addrs) == 0 && len(add) > 1024 {
		v.addrs = make(map[addrKey]int64, len(add))
	}
	b.grow(opAdd, iV4, len(add))
	var cidrAdd []intel.Policy
	for i := range add {
		p := &add[i]
		switch p.Indicator.Type {
		case intel.IPv4, intel.IPv6:
			a, ok := addrOf(p.Indicator)
			if !ok {
				return fmt.Errorf("add %s: not an address", p.Indicator.Key())
			}
			to, ok := f.timeout(*p, now)
			if !ok {
				continue
			}
			kind := opAdd
			if e, held := v.addr(a); held && e.alive(now) {
				if !later(*p, e) {
					continue
				}
				kind = opReplace
			}
			b.queue(op{kind: kind, set: addrSetIndex(a), to: to,
				ent: mkEntry(netip.PrefixFrom(a, a.BitLen()), expiry(now, to))})
		case intel.CIDR:
			cidrAdd = append(cidrAdd, *p)
		}
	}
	if len(cidrAdd) > 0 || nets {
		if err := f.applyNets(&b, v, cidrAdd, remove, now); err != nil {
			return err
		}
	}
	return b.done(ctx)
}

// expiry is the view's expiry of an element added at now with timeout to
// (zero: none). The kernel's is no earlier.
func expiry(now time.Time, to time.Duration) time.Time {
	if to == 0 {
		return time.Time{}
	}
	return now.Add(to)
}

func lastAddr(pfx netip.Prefix) netip.Addr {
	b := pfx.Masked().Addr().AsSlice()
	for i := pfx.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// timeout returns the element timeout for p at now: zero for a policy
// that never expires; ok is false if it has already expired.
func (f *Firewall) timeout(p intel.Policy, now time.Time) (time.Duration, bool) {
	if p.ExpiresAt.IsZero() {
		return 0, true
	}
	d := p.ExpiresAt.Sub(now)
	if d <= 0 {
		f.skipped.Add(1)
		return 0, false
	}
	// The kernel counts in milliseconds; round up so that an element
	// never expires before its policy.
	return (d + time.Millisecond - 1).Truncate(time.Millisecond), true
}

func addrSetIndex(a netip.Addr) uint8 {
	if a.Is4() {
		return iV4
	}
	return iV6
}

func netSetIndex(p netip.Prefix) uint8 {
	if p.Addr().Is4() {
		return iV4Net
	}
	return iV6Net
}
