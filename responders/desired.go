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
// on a tie). Desired does not modify its inputs.
func Desired(now time.Time, mesh, local []intel.Policy, protected []netip.Prefix) map[string]intel.Policy {
	var allows []intel.Indicator
	for _, list := range [][]intel.Policy{mesh, local} {
		for _, p := range list {
			if p.Action == intel.ActionAllow && p.Active(now) {
				allows = append(allows, p.Indicator)
			}
		}
	}
	out := make(map[string]intel.Policy)
	for _, list := range [][]intel.Policy{mesh, local} {
		for _, p := range list {
			if p.Action != intel.ActionBlock || !p.Active(now) || vetoed(p.Indicator, allows, protected) {
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

// vetoed reports whether an allow or a protected range covers any part of
// ind.
func vetoed(ind intel.Indicator, allows []intel.Indicator, protected []netip.Prefix) bool {
	for _, a := range allows {
		if ind.Overlaps(a) {
			return true
		}
	}
	if len(protected) == 0 {
		return false
	}
	p, ok := ind.Prefix()
	if !ok {
		return false
	}
	for _, q := range protected {
		if q.IsValid() && p.Overlaps(q) {
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
