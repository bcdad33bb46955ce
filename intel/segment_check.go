package intel

import (
	"cmp"
	"slices"
)

// Checks of one flow against the others: contradictions (refused by the
// FSM) and shadowing (accepted, reported).

// FlowWarning says that a flow never decides anything: every packet it
// matches is matched first by ShadowedBy (earlier in evaluation order).
type FlowWarning struct {
	Flow       string `json:"flow"`
	ShadowedBy string `json:"shadowed_by"`
}

// SameMatch reports whether f and g match exactly the same packets by
// name: the same zones, protocol and set of ports (however the ranges are
// written).
func (f Flow) SameMatch(g Flow) bool {
	return f.From == g.From && f.To == g.To && f.Proto == g.Proto && coversPorts(f.Ports, g.Ports) && coversPorts(g.Ports, f.Ports)
}

// Covers reports whether g matches every packet that f matches, judged
// by names: g's zones are f's or AnyZone, its protocol is f's or any, and
// its ports include f's. (Zones of different names whose ranges happen to
// nest are not compared.)
func (g Flow) Covers(f Flow) bool {
	if g.From != AnyZone && g.From != f.From || g.To != AnyZone && g.To != f.To {
		return false
	}
	if g.Proto != ProtoAny && g.Proto != f.Proto {
		return false
	}
	return coversPorts(g.Ports, f.Ports)
}

// Contradicts returns the flow of s, other than f's name, that matches
// exactly what f matches at the same priority with the opposite action.
func (s Segmentation) Contradicts(f Flow) (Flow, bool) {
	for _, g := range s.Flows {
		if g.Name != f.Name && g.Priority == f.Priority && g.Action != f.Action && g.SameMatch(f) {
			return g, true
		}
	}
	return Flow{}, false
}

// FlowWarnings returns, by flow name, the flows that some earlier flow in
// evaluation order (Ordered) covers entirely.
func (s Segmentation) FlowWarnings() []FlowWarning {
	ord := s.Ordered()
	var out []FlowWarning
	for i, f := range ord {
		for _, g := range ord[:i] {
			if g.Covers(f) {
				out = append(out, FlowWarning{Flow: f.Name, ShadowedBy: g.Name})
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b FlowWarning) int { return cmp.Compare(a.Flow, b.Flow) })
	return out
}

// coversPorts reports whether the ports of g include those of f; no
// ranges means every port.
func coversPorts(g, f []PortRange) bool {
	if len(g) == 0 {
		return true
	}
	if len(f) == 0 {
		return false
	}
	merged := mergePorts(g)
	for _, r := range f {
		if !slices.ContainsFunc(merged, func(m PortRange) bool { return m.From <= r.From && r.To <= m.To }) {
			return false
		}
	}
	return true
}

// mergePorts returns rs sorted with overlapping and adjacent ranges
// joined.
func mergePorts(rs []PortRange) []PortRange {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b PortRange) int { return cmp.Compare(a.From, b.From) })
	var out []PortRange
	for _, r := range s {
		if n := len(out); n > 0 && uint32(r.From) <= uint32(out[n-1].To)+1 {
			out[n-1].To = max(out[n-1].To, r.To)
			continue
		}
		out = append(out, r)
	}
	return out
}
