package responders

import (
	"net/netip"
	"time"

	"github.com/meshward/meshward/intel"
)

// Desired computes the indicators that must be blocked at now: every
// active block policy of mesh and local, minus those whose indicator
// overlaps an active allow policy (allow beats block) or a protected
// prefix. The result is keyed by Indicator.Key(); when both lists block
// the same indicator, the policy that lasts longer is kept (a mesh policy
// on a tie). Blocks whose indicator is not valid and canonical are
// skipped. Desired does not modify its inputs. It computes from scratch
// what the Reconciler keeps up to date change by change (without the
// safety floors, which the Reconciler applies after it); the tests hold
// the two equal.
func Desired(now time.Time, mesh, local []intel.Policy, protected []netip.Prefix) map[string]intel.Policy {
	var v veto
	v.protected = protected
	for _, list := range [][]intel.Policy{mesh, local} {
		for _, p := range list {
			if p.Action == intel.ActionAllow && p.Active(now) {
				v.add(p.Indicator)
			}
		}
	}
	out := make(map[string]intel.Policy)
	for _, list := range [][]intel.Policy{mesh, local} {
		for _, p := range list {
			if p.Action != intel.ActionBlock || !p.Active(now) {
				continue
			}
			// A malformed indicator cannot be enforced, and handing it to
			// a backend could fail the whole batch it travels in.
			if p.Indicator.Validate() != nil || v.covers(p.Indicator) {
				continue
			}
			k := p.Indicator.Key()
			if have, ok := out[k]; ok && !outlasts(p, have) {
				continue
			}
			out[k] = p
		}
	}
	return out
}

// veto holds what no block may overlap: active allows and protected
// ranges. Single-address allows are kept in a set so that checking an
// address block costs a lookup plus a scan of the network allows, not a
// scan of every allow.
type veto struct {
	addrs     map[string]struct{} // keys of ipv4 and ipv6 allows
	nets      []netip.Prefix      // cidr allows
	others    []intel.Indicator   // every other allow
	all       []intel.Indicator
	protected []netip.Prefix
}

func (v *veto) add(ind intel.Indicator) {
	v.all = append(v.all, ind)
	switch ind.Type {
	case intel.IPv4, intel.IPv6:
		if v.addrs == nil {
			v.addrs = make(map[string]struct{})
		}
		v.addrs[ind.Key()] = struct{}{}
	case intel.CIDR:
		if p, ok := ind.Prefix(); ok {
			v.nets = append(v.nets, p)
		}
	default:
		v.others = append(v.others, ind)
	}
}

// covers reports whether an allow or a protected range overlaps any part
// of ind.
func (v *veto) covers(ind intel.Indicator) bool {
	p, isNet := ind.Prefix()
	if isNet {
		for _, q := range v.protected {
			if q.IsValid() && p.Overlaps(q) {
				return true
			}
		}
	}
	switch ind.Type {
	case intel.IPv4, intel.IPv6:
		if _, ok := v.addrs[ind.Key()]; ok {
			return true
		}
		for _, q := range v.nets {
			if q.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	for _, a := range v.all {
		if ind.Overlaps(a) {
			return true
		}
	}
	return false
}

// outlasts reports whether p expires strictly later than q (zero: never).
func outlasts(p, q intel.Policy) bool {
	switch {
	case q.ExpiresAt.IsZero():
		return false
	case p.ExpiresAt.IsZero():
		return true
	}
	return p.ExpiresAt.After(q.ExpiresAt)
}
