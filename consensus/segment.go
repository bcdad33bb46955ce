package consensus

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Segmentation in the FSM: zones, flows between them and quarantines of
// single hosts (intel/segment.go), set by operator-signed commands
// (set_zone, remove_zone, set_flow, remove_flow: admin; quarantine,
// release: responder) and by automatic quarantines proven by signed
// sightings (proof_quarantine.go). Beyond each value's own validation the
// FSM refuses, each under its own reason (command "operator"):
//
//   - unknown_zone: a flow names a zone the mesh does not hold;
//     zone_in_use: removing a zone that a flow names;
//     unknown_flow, unknown_quarantine: removing what is not held;
//   - too_many_zones, too_many_flows, too_many_quarantines: the bounds of
//     intel/segment.go;
//   - contradicts: a flow matching exactly what another flow matches, at
//     the same priority, with the opposite action;
//   - cuts_member, cuts_protected, cuts_local: an enforcing deny flow, or
//     a default-deny zone, whose (named) zone ranges overlap a member's
//     address, a protected range (OpProtect), or loopback/link-local
//     space. The check is strict: any overlap is refused, whatever the
//     ports. The mesh's own traffic (gossip, Raft, the admin listener)
//     runs between members' addresses, so refusing a deny that reaches a
//     member's address keeps it whole; a flow's AnyZone side is not
//     checked, since a deny cuts member-to-member traffic only if both
//     sides hold a member and the named side holds none. The zone is
//     checked when it is set (as a default-deny zone, and under every
//     enforcing deny flow that names it) and the flow when it is set;
//     members admitted or ranges protected later are not rechecked here:
//     the responders never drop a member's or protected address.
//   - member_address, protected, loopback, link_local, multicast,
//     unspecified: a quarantine of a member's address, of an address in
//     a protected range, or of a local or special address. A host in no
//     zone may be quarantined; its Quarantine.Zone is then empty.
//   - already_expired: a quarantine whose end is not after the FSM's now.
//
// A flow that an earlier flow (in evaluation order) covers entirely is
// accepted: it is not wrong, only useless. intel.Segmentation.FlowWarnings
// names such flows; the admin API lists them with the flows (GET
// /v1/flows) and in the result of the set_flow that made one, which the
// CLI prints.
//
// A quarantine's Since is its operator command's header time (Issued),
// and ExpiresAt is Since plus ttl_seconds (zero: until released), so
// every replica computes the same expiry. Expired quarantines are
// dropped when the FSM's clock passes them; Segmentation(now) leaves out
// those expired at now.

// segState is the FSM's segmentation. The values held are never mutated
// in place (a set replaces them), so a snapshot shares them.
type segState struct {
	zones       map[string]intel.Zone
	flows       map[string]intel.Flow
	quarantines map[netip.Addr]intel.Quarantine
	// nextExpiry is the earliest quarantine expiry (zero: none).
	nextExpiry time.Time
	// released is when each host was last released (an automatic
	// quarantine's proofs must be later), kept for the longest window;
	// oldestRelease is the earliest of them (zero: none).
	released      map[netip.Addr]time.Time
	oldestRelease time.Time
	// changed is closed after every change and replaced; it survives a
	// restore.
	changed chan struct{}
}

func newSegState() segState {
	return segState{
		zones:       map[string]intel.Zone{},
		flows:       map[string]intel.Flow{},
		quarantines: map[netip.Addr]intel.Quarantine{},
		released:    map[netip.Addr]time.Time{},
		changed:     make(chan struct{}),
	}
}

// segSnapshot is the segmentation in a snapshot, every list sorted.
type segSnapshot struct {
	Zones       []intel.Zone       `json:"zones,omitempty"`
	Flows       []intel.Flow       `json:"flows,omitempty"`
	Quarantines []intel.Quarantine `json:"quarantines,omitempty"`
	Released    []releaseRecord    `json:"released,omitempty"`
}

type releaseRecord struct {
	Host netip.Addr `json:"host"`
	At   time.Time  `json:"at"`
}

func (s segState) clone() segState {
	return segState{zones: maps.Clone(s.zones), flows: maps.Clone(s.flows), quarantines: maps.Clone(s.quarantines),
		nextExpiry: s.nextExpiry, released: maps.Clone(s.released), oldestRelease: s.oldestRelease}
}

func (s segState) empty() bool {
	return len(s.zones) == 0 && len(s.flows) == 0 && len(s.quarantines) == 0 && len(s.released) == 0
}

// snapshot returns the state as sorted lists.
func (s segState) snapshot() *segSnapshot {
	if s.empty() {
		return nil
	}
	out := &segSnapshot{}
	for _, n := range slices.Sorted(maps.Keys(s.zones)) {
		out.Zones = append(out.Zones, s.zones[n])
	}
	for _, n := range slices.Sorted(maps.Keys(s.flows)) {
		out.Flows = append(out.Flows, s.flows[n])
	}
	for _, h := range slices.SortedFunc(maps.Keys(s.quarantines), netip.Addr.Compare) {
		out.Quarantines = append(out.Quarantines, s.quarantines[h])
	}
	for _, h := range slices.SortedFunc(maps.Keys(s.released), netip.Addr.Compare) {
		out.Released = append(out.Released, releaseRecord{h, s.released[h]})
	}
	return out
}

// restoreSegState rebuilds the segmentation of a snapshot (nil: none),
// checking every value and that flows name held zones.
func restoreSegState(snap *segSnapshot) (segState, error) {
	s := newSegState()
	s.changed = nil // the FSM keeps its own
	if snap == nil {
		return s, nil
	}
	for _, z := range snap.Zones {
		if err := z.Validate(); err != nil {
			return s, fmt.Errorf("segmentation: %w", err)
		}
		s.zones[z.Name] = z
	}
	for _, f := range snap.Flows {
		if err := f.Validate(); err != nil {
			return s, fmt.Errorf("segmentation: %w", err)
		}
		for _, z := range []string{f.From, f.To} {
			if _, ok := s.zones[z]; !ok && z != intel.AnyZone {
				return s, fmt.Errorf("segmentation: flow %s names zone %q, not held", f.Name, z)
			}
		}
		s.flows[f.Name] = f
	}
	for _, q := range snap.Quarantines {
		if err := q.Validate(); err != nil {
			return s, fmt.Errorf("segmentation: %w", err)
		}
		s.quarantines[q.Host] = q
	}
	for _, r := range snap.Released {
		if !r.Host.IsValid() || r.At.IsZero() {
			return s, fmt.Errorf("segmentation: release of %s at %s", r.Host, r.At)
		}
		s.released[r.Host] = r.At
	}
	s.reindex()
	return s, nil
}

// reindex recomputes nextExpiry and oldestRelease.
func (s *segState) reindex() {
	s.oldestRelease = time.Time{}
	for _, at := range s.released {
		if s.oldestRelease.IsZero() || at.Before(s.oldestRelease) {
			s.oldestRelease = at
		}
	}
	s.nextExpiry = time.Time{}
	for _, q := range s.quarantines {
		if !q.ExpiresAt.IsZero() && (s.nextExpiry.IsZero() || q.ExpiresAt.Before(s.nextExpiry)) {
			s.nextExpiry = q.ExpiresAt
		}
	}
}

// signal wakes whoever waits on a change. Caller holds the write lock.
func (s *segState) signal() {
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
}

// prune drops the quarantines expired at now. Caller holds the write
// lock.
func (s *segState) prune(now time.Time) {
	if !s.oldestRelease.IsZero() && now.Sub(s.oldestRelease) > maxReleaseMemory {
		for h, at := range s.released {
			if now.Sub(at) > maxReleaseMemory {
				delete(s.released, h)
			}
		}
		s.reindex()
	}
	if s.nextExpiry.IsZero() || now.Before(s.nextExpiry) {
		return
	}
	for h, q := range s.quarantines {
		if !q.Active(now) {
			delete(s.quarantines, h)
		}
	}
	s.reindex()
	s.signal()
}

// view is the state as an intel.Segmentation at now: zones by name,
// flows in evaluation order, the quarantines active at now by host. The
// slices are copies.
func (s segState) view(now time.Time) intel.Segmentation {
	var out intel.Segmentation
	for _, n := range slices.Sorted(maps.Keys(s.zones)) {
		z := s.zones[n]
		z.CIDRs, z.Sites = slices.Clone(z.CIDRs), slices.Clone(z.Sites)
		if a := z.AutoQuarantine; a != nil {
			c := *a
			c.Rules = slices.Clone(a.Rules)
			z.AutoQuarantine = &c
		}
		out.Zones = append(out.Zones, z)
	}
	for _, f := range s.flows {
		f.Ports = slices.Clone(f.Ports)
		out.Flows = append(out.Flows, f)
	}
	out.Flows = out.Ordered()
	for _, h := range slices.SortedFunc(maps.Keys(s.quarantines), netip.Addr.Compare) {
		if q := s.quarantines[h]; q.Active(now) {
			out.Quarantines = append(out.Quarantines, q)
		}
	}
	return out
}

// zoneOf returns the first zone by name that contains a ("" if none).
func (s segState) zoneOf(a netip.Addr) string {
	var names []string
	for n, z := range s.zones {
		if z.Contains(a) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return slices.Min(names)
}

// liveQuarantines counts the quarantines active at now other than host's.
func (s segState) liveQuarantines(now time.Time, host netip.Addr) int {
	n := 0
	for h, q := range s.quarantines {
		if h != host && q.Active(now) {
			n++
		}
	}
	return n
}

// maxReleaseMemory is how long a release is remembered: the longest
// corroboration window (OpSetCorroboration) and the skew, after which any
// proof sent before the release is stale anyway.
const maxReleaseMemory = 7*24*time.Hour + signedSkew

// The ranges no deny and no quarantine may touch: loopback and link-local.
var localRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
}

// meshCut refuses what (a default-deny zone, or a deny flow through a
// zone) when one of ps overlaps loopback or link-local space, a protected
// range or a member's address: it names the first of them found.
func (f *fsm) meshCut(what string, ps []netip.Prefix) *RefusalError {
	const t = CmdOperator
	for _, p := range ps {
		for _, l := range localRanges {
			if p.Overlaps(l) {
				return refuse(t, "cuts_local", ErrRefused, "%s: %s overlaps %s (loopback or link-local): it would cut the mesh's own traffic", what, p, l)
			}
		}
		k := keyOfPrefix(p)
		if r, _, ok := f.protectedIndex.first(k); ok {
			return refuse(t, "cuts_protected", ErrProtected, "%s: %s overlaps protected %s: it would cut the mesh's own traffic", what, p, r.prefix())
		}
		if r, _, ok := f.memberIndex.first(k); ok {
			return refuse(t, "cuts_member", ErrProtected, "%s: %s holds the mesh member address %s: it would cut the mesh's own traffic", what, p, r.prefix().Addr())
		}
	}
	return nil
}

// enforcingDeny reports whether fl drops what it matches.
func enforcingDeny(fl intel.Flow) bool { return fl.Action == intel.FlowDeny && !fl.Observe() }

// quarantineFloor refuses a quarantine of host (unmapped) that would cut
// the mesh or is not an ordinary address; t is the command refused.
func (f *fsm) quarantineFloor(t CommandType, host netip.Addr) *RefusalError {
	switch {
	case host.IsUnspecified():
		return refuse(t, "unspecified", ErrRefused, "%s is the unspecified address", host)
	case host.IsLoopback():
		return refuse(t, "loopback", ErrRefused, "%s is a loopback address", host)
	case host.IsLinkLocalUnicast():
		return refuse(t, "link_local", ErrRefused, "%s is a link-local address", host)
	case host.IsMulticast():
		return refuse(t, "multicast", ErrRefused, "%s is a multicast address", host)
	}
	k := keyOfPrefix(netip.PrefixFrom(host, host.BitLen()))
	if r, _, ok := f.memberIndex.first(k); ok {
		return refuse(t, "member_address", ErrProtected, "%s is the mesh member address %s", host, r.prefix().Addr())
	}
	if r, _, ok := f.protectedIndex.first(k); ok {
		return refuse(t, "protected", ErrProtected, "%s is in protected %s", host, r.prefix())
	}
	return nil
}

// setQuarantine checks a quarantine of q.Host at now (t: the command) and
// returns its change; q's Zone is filled here.
func (f *fsm) setQuarantine(t CommandType, q intel.Quarantine, now time.Time) (func(), *RefusalError) {
	s := &f.seg
	if rerr := f.quarantineFloor(t, q.Host); rerr != nil {
		return nil, rerr
	}
	if !q.ExpiresAt.IsZero() && !now.Before(q.ExpiresAt) {
		return nil, refuse(t, "already_expired", ErrRefused, "a quarantine of %s until %s has ended by %s",
			q.Host, q.ExpiresAt.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	// Held ones include the live: counted only near the bound.
	if len(s.quarantines) >= intel.MaxQuarantines && s.liveQuarantines(now, q.Host) >= intel.MaxQuarantines {
		return nil, refuse(t, "too_many_quarantines", ErrRefused, "%d hosts are quarantined, limit %d", intel.MaxQuarantines, intel.MaxQuarantines)
	}
	if err := q.Validate(); err != nil {
		return nil, refuse(t, "malformed", ErrInvalidCommand, "%v", err)
	}
	q.Zone = s.zoneOf(q.Host)
	return func() {
		s.quarantines[q.Host] = q
		if !q.ExpiresAt.IsZero() && (s.nextExpiry.IsZero() || q.ExpiresAt.Before(s.nextExpiry)) {
			s.nextExpiry = q.ExpiresAt
		}
		s.signal()
	}, nil
}

// segOperatorOp checks the segmentation operations and returns their
// change.
func (f *fsm) segOperatorOp(cmd intel.OperatorCommand, op Operator, now time.Time) (func(), *RefusalError) {
	const t = CmdOperator
	s := &f.seg
	switch cmd.Op {
	case intel.OpSetZone:
		z := *cmd.Zone
		z.CIDRs, z.Sites = slices.Clone(z.CIDRs), slices.Clone(z.Sites)
		if a := z.AutoQuarantine; a != nil {
			c := *a
			c.Rules = slices.Clone(a.Rules)
			z.AutoQuarantine = &c
		}
		if _, exists := s.zones[z.Name]; !exists && len(s.zones) >= intel.MaxZones {
			return nil, refuse(t, "too_many_zones", ErrRefused, "the mesh holds %d zones, limit %d", len(s.zones), intel.MaxZones)
		}
		if z.DefaultDeny {
			if rerr := f.meshCut("default-deny zone "+z.Name, z.CIDRs); rerr != nil {
				return nil, rerr
			}
		}
		for _, n := range slices.Sorted(maps.Keys(s.flows)) {
			fl := s.flows[n]
			if enforcingDeny(fl) && (fl.From == z.Name || fl.To == z.Name) {
				if rerr := f.meshCut(fmt.Sprintf("zone %s under deny flow %s", z.Name, fl.Name), z.CIDRs); rerr != nil {
					return nil, rerr
				}
			}
		}
		return func() {
			s.zones[z.Name] = z
			s.signal()
		}, nil
	case intel.OpRemoveZone:
		name := cmd.ZoneName
		if _, ok := s.zones[name]; !ok {
			return nil, refuse(t, "unknown_zone", ErrRefused, "no zone %q", name)
		}
		for _, n := range slices.Sorted(maps.Keys(s.flows)) {
			if fl := s.flows[n]; fl.From == name || fl.To == name {
				return nil, refuse(t, "zone_in_use", ErrRefused, "flow %s names zone %s: remove or change it first", fl.Name, name)
			}
		}
		return func() {
			delete(s.zones, name)
			s.signal()
		}, nil
	case intel.OpSetFlow:
		fl := *cmd.Flow
		fl.Ports = slices.Clone(fl.Ports)
		var zones []intel.Zone
		for _, n := range []string{fl.From, fl.To} {
			if n == intel.AnyZone {
				continue
			}
			z, ok := s.zones[n]
			if !ok {
				return nil, refuse(t, "unknown_zone", ErrRefused, "flow %s names zone %q, which the mesh does not hold", fl.Name, n)
			}
			zones = append(zones, z)
		}
		if _, exists := s.flows[fl.Name]; !exists && len(s.flows) >= intel.MaxFlows {
			return nil, refuse(t, "too_many_flows", ErrRefused, "the mesh holds %d flows, limit %d", len(s.flows), intel.MaxFlows)
		}
		if g, ok := s.contradicts(fl); ok {
			return nil, refuse(t, "contradicts", ErrRefused, "flow %s contradicts flow %s: the same match at priority %d, %s against %s",
				fl.Name, g.Name, fl.Priority, fl.Action, g.Action)
		}
		if enforcingDeny(fl) {
			for _, z := range zones {
				if rerr := f.meshCut(fmt.Sprintf("deny flow %s through zone %s", fl.Name, z.Name), z.CIDRs); rerr != nil {
					return nil, rerr
				}
			}
		}
		return func() {
			s.flows[fl.Name] = fl
			s.signal()
		}, nil
	case intel.OpRemoveFlow:
		name := cmd.FlowName
		if _, ok := s.flows[name]; !ok {
			return nil, refuse(t, "unknown_flow", ErrRefused, "no flow %q", name)
		}
		return func() {
			delete(s.flows, name)
			s.signal()
		}, nil
	case intel.OpQuarantine:
		since := cmd.Header.Issued
		q := intel.Quarantine{Host: cmd.Host.Unmap(), Reason: cmd.Reason, By: "operator:" + op.KeyID, Since: since}
		if cmd.TTLSeconds > 0 {
			q.ExpiresAt = since.Add(cmd.TTL())
		}
		return f.setQuarantine(t, q, now)
	case intel.OpRelease:
		host := cmd.Host.Unmap()
		if q, ok := s.quarantines[host]; !ok || !q.Active(now) {
			return nil, refuse(t, "unknown_quarantine", ErrRefused, "%s is not quarantined", host)
		}
		return func() {
			delete(s.quarantines, host)
			s.released[host] = now
			s.reindex()
			s.signal()
		}, nil
	}
	return nil, refuse(t, "malformed", ErrInvalidCommand, "unknown op %q", cmd.Op)
}

// contradicts returns the flow held, the first by name, that fl
// contradicts (intel.Segmentation.Contradicts), without copying the
// flows.
func (s segState) contradicts(fl intel.Flow) (intel.Flow, bool) {
	var found intel.Flow
	ok := false
	for _, g := range s.flows {
		if g.Name != fl.Name && g.Priority == fl.Priority && g.Action != fl.Action && g.SameMatch(fl) && (!ok || g.Name < found.Name) {
			found, ok = g, true
		}
	}
	return found, ok
}

// segmentation is the zones and flows (no quarantines), unordered, for
// the checks.
func (s segState) segmentation() intel.Segmentation {
	var out intel.Segmentation
	for _, n := range slices.Sorted(maps.Keys(s.zones)) {
		out.Zones = append(out.Zones, s.zones[n])
	}
	for _, n := range slices.Sorted(maps.Keys(s.flows)) {
		out.Flows = append(out.Flows, s.flows[n])
	}
	return out
}

// --- reading -----------------------------------------------------------------

// Segmentation returns the mesh's segmentation at now as this node has
// applied it: the zones by name, the flows in evaluation order
// (intel.Segmentation.Ordered) and the quarantines active at now by host
// address. The result is a copy. It is the last committed state, also in
// a minority partition; WaitConsistent first makes it linearizable.
func (c *Consensus) Segmentation(now time.Time) intel.Segmentation {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.seg.view(now)
}

// SegmentationChanged returns a channel that is closed at the next change
// of the zones, flows or quarantines (a command, an expired quarantine
// dropped, a restored snapshot). Take it before reading Segmentation, and
// take a new one after it fires:
//
//	for {
//		ch := c.SegmentationChanged()
//		apply(c.Segmentation(time.Now()))
//		select { case <-ch: case <-ctx.Done(): return }
//	}
//
// A quarantine's end passing is not a change until the FSM's clock
// passes it; a reader that must act on time wakes at the earliest
// ExpiresAt it holds as well. Any number of readers may wait.
func (c *Consensus) SegmentationChanged() <-chan struct{} {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.seg.changed
}

// FlowWarnings names the flows that an earlier flow covers entirely
// (accepted, but they never decide anything).
func (c *Consensus) FlowWarnings() []intel.FlowWarning {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	return c.fsm.seg.segmentation().FlowWarnings()
}
