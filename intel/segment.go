package intel

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Segmentation: named zones (sets of address ranges) and flow policies
// between them, held in the FSM and set by operator-signed commands, and
// quarantines that isolate one internal host mesh-wide. Every node
// enforces the flows that concern its own addresses.
//
// Evaluation order of a packet from src to dst (Segmentation.Decide):
//  1. A quarantined host talks only to management zones: any packet from
//     or to it whose other end is in no management zone is dropped.
//  2. The flows that match (src in From, dst in To, protocol, port), by
//     descending Priority, deny before allow on a tie, name order after:
//     the first decides. An observe-mode flow that would deny lets the
//     packet pass and counts it.
//  3. Otherwise a packet to an address in a default-deny zone is dropped,
//     and everything else passes.

// ErrInvalidSegment is wrapped by every zone, flow and quarantine
// validation error.
var ErrInvalidSegment = errors.New("invalid segmentation")

// Bounds of segmentation state.
const (
	MaxZones          = 256
	MaxZoneCIDRs      = 256
	MaxZoneSites      = 64
	MaxFlows          = 1024
	MaxFlowPorts      = 32
	MaxFlowPriority   = 1000
	MaxQuarantines    = 4096
	MaxSegmentName    = 64
	MaxQuarantineTTL  = 30 * 24 * time.Hour
	MaxQuarantineText = 256
)

// AnyZone as a flow's From or To matches every address.
const AnyZone = "*"

// Zone is a named set of address ranges. Sites, when set, limits the
// zone to those members' sites (node names); DefaultDeny drops traffic
// into the zone that no allow flow admits; a Management zone stays
// reachable from and to quarantined hosts.
type Zone struct {
	Name        string         `json:"name"`
	CIDRs       []netip.Prefix `json:"cidrs"`
	Sites       []string       `json:"sites,omitempty"`
	DefaultDeny bool           `json:"default_deny,omitempty"`
	Management  bool           `json:"management,omitempty"`
	// AutoQuarantine, when set, lets a detection by one of its rules
	// quarantine a host of this zone without an operator (see
	// AutoQuarantine).
	AutoQuarantine *AutoQuarantine `json:"auto_quarantine,omitempty"`
}

// Contains reports whether a is in one of z's ranges.
func (z Zone) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range z.CIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Validate checks the zone's fields; each error names the field.
func (z Zone) Validate() error {
	if err := ValidSegmentName("zone name", z.Name); err != nil {
		return err
	}
	if z.Name == AnyZone {
		return fmt.Errorf("%w: zone name %q is reserved", ErrInvalidSegment, AnyZone)
	}
	if n := len(z.CIDRs); n == 0 || n > MaxZoneCIDRs {
		return fmt.Errorf("%w: zone %s: %d cidrs, want 1..%d", ErrInvalidSegment, z.Name, n, MaxZoneCIDRs)
	}
	for i, p := range z.CIDRs {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
			return fmt.Errorf("%w: zone %s: cidrs[%d] %s: want a canonical CIDR", ErrInvalidSegment, z.Name, i, p)
		}
		if slices.Contains(z.CIDRs[:i], p) {
			return fmt.Errorf("%w: zone %s: cidrs[%d] %s repeated", ErrInvalidSegment, z.Name, i, p)
		}
	}
	if a := z.AutoQuarantine; a != nil {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("zone %s: %w", z.Name, err)
		}
	}
	if len(z.Sites) > MaxZoneSites {
		return fmt.Errorf("%w: zone %s: %d sites, limit %d", ErrInvalidSegment, z.Name, len(z.Sites), MaxZoneSites)
	}
	for i, s := range z.Sites {
		if err := ValidSegmentName(fmt.Sprintf("zone %s: sites[%d]", z.Name, i), s); err != nil {
			return err
		}
	}
	return nil
}

// FlowAction is what a flow does with the packets it matches.
type FlowAction string

// The flow actions.
const (
	FlowAllow FlowAction = "allow"
	FlowDeny  FlowAction = "deny"
)

// FlowMode is how a flow is enforced: observe counts (and logs) what it
// would drop without dropping it.
type FlowMode string

// The flow modes; the empty mode is enforce.
const (
	FlowEnforce FlowMode = "enforce"
	FlowObserve FlowMode = "observe"
)

// The protocols a flow names.
const (
	ProtoAny  = "any"
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoICMP = "icmp"
)

// PortRange is an inclusive range of destination ports.
type PortRange struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// Contains reports whether port p is in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.From && p <= r.To }

// Flow is a policy on the traffic from one zone to another.
type Flow struct {
	Name     string      `json:"name"`
	From     string      `json:"from"`
	To       string      `json:"to"`
	Proto    string      `json:"proto"`
	Ports    []PortRange `json:"ports,omitempty"`
	Action   FlowAction  `json:"action"`
	Priority int         `json:"priority"`
	Mode     FlowMode    `json:"mode,omitempty"`
}

// Observe reports whether f only counts what it would drop.
func (f Flow) Observe() bool { return f.Mode == FlowObserve }

// Validate checks the flow's fields alone (that its zones exist is the
// FSM's check); each error names the field.
func (f Flow) Validate() error {
	if err := ValidSegmentName("flow name", f.Name); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: flow %s: %s", ErrInvalidSegment, f.Name, fmt.Sprintf(format, args...))
	}
	for _, z := range []struct{ field, v string }{{"from", f.From}, {"to", f.To}} {
		if z.v == AnyZone {
			continue
		}
		if err := ValidSegmentName(z.field, z.v); err != nil {
			return bad("%v", err)
		}
	}
	if f.From == AnyZone && f.To == AnyZone {
		return bad("from and to are both %q: a flow names at least one zone", AnyZone)
	}
	switch f.Proto {
	case ProtoAny, ProtoICMP:
		if len(f.Ports) > 0 {
			return bad("ports need proto tcp or udp, not %q", f.Proto)
		}
	case ProtoTCP, ProtoUDP:
	default:
		return bad("proto %q: want any, tcp, udp or icmp", f.Proto)
	}
	if len(f.Ports) > MaxFlowPorts {
		return bad("%d port ranges, limit %d", len(f.Ports), MaxFlowPorts)
	}
	for i, r := range f.Ports {
		if r.From == 0 || r.To < r.From {
			return bad("ports[%d] %d-%d: want 1 <= from <= to", i, r.From, r.To)
		}
	}
	if f.Action != FlowAllow && f.Action != FlowDeny {
		return bad("action %q: want allow or deny", f.Action)
	}
	if f.Priority < 0 || f.Priority > MaxFlowPriority {
		return bad("priority %d: want 0..%d", f.Priority, MaxFlowPriority)
	}
	if f.Mode != "" && f.Mode != FlowEnforce && f.Mode != FlowObserve {
		return bad("mode %q: want enforce or observe", f.Mode)
	}
	return nil
}

// Quarantine isolates one host mesh-wide until ExpiresAt (zero: until
// released). Its times come from the log entry that set it.
type Quarantine struct {
	Host      netip.Addr `json:"host"`
	Reason    string     `json:"reason,omitempty"`
	By        string     `json:"by"`
	Since     time.Time  `json:"since"`
	ExpiresAt time.Time  `json:"expires_at,omitzero"`
	// Zone is the first zone, by name, that held Host when the
	// quarantine was set; empty when the host was in no zone (allowed,
	// and recorded so).
	Zone string `json:"zone,omitempty"`
	// Rule is the detection rule of an automatic quarantine; empty when
	// an operator set it.
	Rule string `json:"rule,omitempty"`
}

// Active reports whether q isolates its host at now.
func (q Quarantine) Active(now time.Time) bool {
	return q.ExpiresAt.IsZero() || now.Before(q.ExpiresAt)
}

// Validate checks the quarantine's fields alone (the safety floors are
// the FSM's check).
func (q Quarantine) Validate() error {
	if !q.Host.IsValid() || q.Host.Is4In6() || q.Host.Zone() != "" {
		return fmt.Errorf("%w: quarantine host %s: want a plain IPv4 or IPv6 address", ErrInvalidSegment, q.Host)
	}
	if len(q.Reason) > MaxQuarantineText || len(q.By) > MaxQuarantineText {
		return fmt.Errorf("%w: quarantine %s: reason or by over %d bytes", ErrInvalidSegment, q.Host, MaxQuarantineText)
	}
	if !q.ExpiresAt.IsZero() && !q.ExpiresAt.After(q.Since) {
		return fmt.Errorf("%w: quarantine %s: expires_at %s is not after since %s", ErrInvalidSegment, q.Host,
			q.ExpiresAt.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	if !q.ExpiresAt.IsZero() && q.ExpiresAt.Sub(q.Since) > MaxQuarantineTTL {
		return fmt.Errorf("%w: quarantine %s: lasts %s, limit %s", ErrInvalidSegment, q.Host, q.ExpiresAt.Sub(q.Since), MaxQuarantineTTL)
	}
	return nil
}

// ValidSegmentName checks a zone, flow or site name: 1..MaxSegmentName
// bytes of [a-z0-9._-], starting with a letter or digit.
func ValidSegmentName(field, s string) error {
	if s == "" || len(s) > MaxSegmentName {
		return fmt.Errorf("%w: %s %q: want 1..%d bytes", ErrInvalidSegment, field, s, MaxSegmentName)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return fmt.Errorf("%w: %s %q: byte %d (%q): want [a-z0-9] then [a-z0-9._-]", ErrInvalidSegment, field, s, i, c)
		}
	}
	return nil
}

// Segmentation is the mesh's whole segmentation state at one moment.
type Segmentation struct {
	Zones       []Zone       `json:"zones,omitempty"`
	Flows       []Flow       `json:"flows,omitempty"`
	Quarantines []Quarantine `json:"quarantines,omitempty"`
}

// Verdict is what segmentation does with one packet.
type Verdict struct {
	// Drop is true when the packet is dropped.
	Drop bool
	// Observed is true when an observe-mode flow would have dropped it.
	Observed bool
	// By names what decided: "quarantine:<host>", "flow:<name>",
	// "default-deny:<zone>", or "" for the default allow.
	By string
}

// Decide is the reference evaluation of one packet (see the order at the
// top of this file) at now. Responders compile the same decisions into
// the firewall; tests hold the two equal.
func (s Segmentation) Decide(now time.Time, src, dst netip.Addr, proto string, port uint16) Verdict {
	src, dst = src.Unmap(), dst.Unmap()
	for _, q := range s.Quarantines {
		if !q.Active(now) {
			continue
		}
		if q.Host == src && !s.inManagement(dst) || q.Host == dst && !s.inManagement(src) {
			return Verdict{Drop: true, By: "quarantine:" + q.Host.String()}
		}
	}
	for _, f := range s.Ordered() {
		if !s.in(f.From, src) || !s.in(f.To, dst) || !f.matches(proto, port) {
			continue
		}
		if f.Action == FlowAllow {
			return Verdict{By: "flow:" + f.Name}
		}
		if f.Observe() {
			return Verdict{Observed: true, By: "flow:" + f.Name}
		}
		return Verdict{Drop: true, By: "flow:" + f.Name}
	}
	for _, z := range s.Zones {
		if z.DefaultDeny && z.Contains(dst) {
			return Verdict{Drop: true, By: "default-deny:" + z.Name}
		}
	}
	return Verdict{}
}

// Ordered returns the flows in evaluation order: descending priority,
// deny before allow on a tie, then by name.
func (s Segmentation) Ordered() []Flow {
	out := slices.Clone(s.Flows)
	slices.SortStableFunc(out, func(a, b Flow) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if a.Action != b.Action {
			if a.Action == FlowDeny {
				return -1
			}
			return 1
		}
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Zone returns the zone of that name.
func (s Segmentation) Zone(name string) (Zone, bool) {
	for _, z := range s.Zones {
		if z.Name == name {
			return z, true
		}
	}
	return Zone{}, false
}

func (s Segmentation) in(zone string, a netip.Addr) bool {
	if zone == AnyZone {
		return true
	}
	z, ok := s.Zone(zone)
	return ok && z.Contains(a)
}

func (s Segmentation) inManagement(a netip.Addr) bool {
	for _, z := range s.Zones {
		if z.Management && z.Contains(a) {
			return true
		}
	}
	return false
}

func (f Flow) matches(proto string, port uint16) bool {
	if f.Proto != ProtoAny && f.Proto != proto {
		return false
	}
	if len(f.Ports) == 0 {
		return true
	}
	for _, r := range f.Ports {
		if r.Contains(port) {
			return true
		}
	}
	return false
}
