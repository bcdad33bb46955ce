package nft

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// Segmentation in the table: the mesh's zones, flows and quarantines
// (intel.Segmentation) compiled into two base chains of the backend's
// table, beside the block chains and after them.
//
//	chain seg-input   hook input   priority filter+10, policy accept
//	chain seg-forward hook forward priority filter+10, policy accept
//
// The block chains ("input", "forward", priority filter) run first: a
// blocked source is dropped before segmentation looks at it. A packet
// one segmentation chain accepts is accepted by that chain only; one it
// drops is dropped. Each chain holds, in order, rules tagged (in their
// user data) with what they stand for:
//
//  1. seg-input only, "mesh:<port>": the node's own traffic passes —
//     TCP and UDP to one of its listening ports (libp2p, the admin
//     port), and the replies of connections it opened to such a port
//     (ct direction reply, source port). Nothing else is
//     exempt: a mesh peer listening on another port is reached through
//     a management zone.
//  2. "quarantine:src", "quarantine:dst": a source (destination) in the
//     quarantine sets seg-q4/seg-q6 is dropped unless the other end is in
//     the management sets seg-m4/seg-m6 (the union of the management
//     zones). No established/related exemption: a quarantine cuts open
//     connections too.
//  3. "flow:<name>", in intel.Segmentation.Ordered() order: source in
//     the From zone's set (seg-z4-<zone>, seg-z6-<zone>, interval sets),
//     destination in the To zone's set ("*" matches anything), protocol
//     (icmp is icmpv6 in IPv6), destination port range (one rule per
//     range). Allow is accept, deny is drop, an observe-mode deny logs
//     with the prefix "meshward-observe <flow>" and accepts. Every rule
//     counts.
//  4. "default-deny:<zone>": a destination in a default-deny zone is
//     dropped.
//
// Every rule exists once per address family it can match (a zone with
// no IPv6 range has no IPv6 rule). seg-input carries the flows whose To
// zone holds one of the host's addresses (or is "*") and the default
// deny of such zones; seg-forward, when the node routes (a gateway), all
// of them. An IPv6 packet carrying IPv4-mapped addresses is matched as
// IPv6 (Decide unmaps them; such packets do not cross a wire). The
// first matching rule decides, as intel.Segmentation.Decide
// does; SegmentProgram.Eval evaluates the compiled form in Go and the
// property test holds the two equal.

// Names in the table.
const (
	segInput    = "seg-input"
	segForward  = "seg-forward"
	segSetPfx   = "seg-"
	segQ4       = "seg-q4"
	segQ6       = "seg-q6"
	segM4       = "seg-m4"
	segM6       = "seg-m6"
	segPriority = 10 // above the filter priority of the block chains
)

// ObservePrefix starts the log prefix of an observe-mode flow's rule.
const ObservePrefix = "meshward-observe "

// IP protocol numbers the rules match.
const (
	protoICMP   uint8 = 1
	protoTCP    uint8 = 6
	protoUDP    uint8 = 17
	protoICMPv6 uint8 = 58
)

// SegmentTarget is what the compiler knows of the host it compiles for.
type SegmentTarget struct {
	// Addrs are the host's own addresses: seg-input carries the flows
	// into zones that hold one of them. Nil: every flow (the host's
	// addresses are not known).
	Addrs []netip.Addr
	// Forward compiles seg-forward too, for a host that routes.
	Forward bool
	// MeshPorts are the node's own listening ports (libp2p, admin): the
	// node's traffic to and from them passes seg-input first.
	MeshPorts []uint16
}

// SegmentSet is one named set of the compiled form: disjoint, sorted
// ranges of one family.
type SegmentSet struct {
	Name     string      `json:"name"`
	V6       bool        `json:"v6,omitempty"`
	Interval bool        `json:"interval,omitempty"`
	Ranges   []AddrRange `json:"ranges"`
}

// contains reports whether a is in the set.
func (s *SegmentSet) contains(a netip.Addr) bool {
	i, found := slices.BinarySearchFunc(s.Ranges, a, func(r AddrRange, a netip.Addr) int {
		switch {
		case r.To.Compare(a) < 0:
			return -1
		case r.From.Compare(a) > 0:
			return 1
		}
		return 0
	})
	return found && i < len(s.Ranges)
}

// Verdicts of a rule.
const (
	VerdictAccept = "accept"
	VerdictDrop   = "drop"
)

// SegmentRule is one rule of the compiled form. Its matches all hold
// for it to decide: family; protocol (0: any); source in SrcSet (or, with
// SrcNot, not in it); destination likewise; destination port in
// [PortFrom, PortTo] (PortTo 0: any); ReplyToPort: a reply (ct
// direction reply) from that source port, of a connection the host
// opened to it.
type SegmentRule struct {
	Tag         string `json:"tag"`
	V6          bool   `json:"v6,omitempty"`
	Proto       uint8  `json:"proto,omitempty"`
	SrcSet      string `json:"src_set,omitempty"`
	SrcNot      bool   `json:"src_not,omitempty"`
	DstSet      string `json:"dst_set,omitempty"`
	DstNot      bool   `json:"dst_not,omitempty"`
	PortFrom    uint16 `json:"port_from,omitempty"`
	PortTo      uint16 `json:"port_to,omitempty"`
	ReplyToPort uint16 `json:"reply_to_port,omitempty"`
	Log         string `json:"log,omitempty"`
	Verdict     string `json:"verdict"`
}

// SegmentProgram is a Segmentation compiled for one host: the sets and
// both chains' rules, and a hash of them that changes when they do.
type SegmentProgram struct {
	Sets    []SegmentSet  `json:"sets"`
	Input   []SegmentRule `json:"input"`
	Forward []SegmentRule `json:"forward,omitempty"`
	// Hash is the SHA-256 of the rest, in hex.
	Hash string `json:"-"`
	// NextChange is when the program must be compiled again (the
	// earliest expiry of an active quarantine; zero: none).
	NextChange time.Time `json:"-"`
	// Flows and Quarantined count what went in.
	Flows       int `json:"-"`
	Quarantined int `json:"-"`
}

// Set returns the set of that name.
func (p *SegmentProgram) Set(name string) (*SegmentSet, bool) {
	i, ok := slices.BinarySearchFunc(p.Sets, name, func(s SegmentSet, n string) int { return cmp.Compare(s.Name, n) })
	if !ok {
		return nil, false
	}
	return &p.Sets[i], true
}

// Rules returns the rules of chain "input" or "forward".
func (p *SegmentProgram) Rules(chain string) []SegmentRule {
	if chain == "forward" {
		return p.Forward
	}
	return p.Input
}

// Packet is what SegmentProgram.Eval looks at: a new connection's first
// packet (no conntrack state).
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8  // IP protocol number
	Port     uint16 // destination port (TCP, UDP)
}

// Eval runs the rules of chain ("input" or "forward") on pkt as the
// kernel would and returns the verdict and the tag of the deciding rule
// ("" when none matched: the chain's policy accepts). observed is true
// when the deciding rule logs (an observe-mode deny).
func (p *SegmentProgram) Eval(chain string, pkt Packet) (verdict, tag string, observed bool) {
	src, dst := pkt.Src.Unmap(), pkt.Dst.Unmap()
	v6 := !src.Is4()
	in := func(set string, a netip.Addr) bool {
		s, ok := p.Set(set)
		return ok && s.contains(a)
	}
	for _, r := range p.Rules(chain) {
		if r.V6 != v6 || r.Proto != 0 && r.Proto != pkt.Proto || r.ReplyToPort != 0 {
			continue
		}
		if r.SrcSet != "" && in(r.SrcSet, src) == r.SrcNot {
			continue
		}
		if r.DstSet != "" && in(r.DstSet, dst) == r.DstNot {
			continue
		}
		if r.PortTo != 0 && (pkt.Port < r.PortFrom || pkt.Port > r.PortTo) {
			continue
		}
		return r.Verdict, r.Tag, r.Log != ""
	}
	return VerdictAccept, "", false
}

func zoneSetName(zone string, v6 bool) string {
	if v6 {
		return segSetPfx + "z6-" + zone
	}
	return segSetPfx + "z4-" + zone
}

// CompileSegmentation compiles s, as it stands at now, for the host t
// describes. s is trusted to be valid (the FSM validated it); zones a
// flow names that s lacks make the flow match nothing, as in Decide.
func CompileSegmentation(s intel.Segmentation, t SegmentTarget, now time.Time) (*SegmentProgram, error) {
	p := &SegmentProgram{}
	sets := map[string]*SegmentSet{}
	addSet := func(name string, v6, interval bool, pfx []netip.Prefix) {
		if _, ok := sets[name]; ok {
			return
		}
		sets[name] = &SegmentSet{Name: name, V6: v6, Interval: interval, Ranges: mergeRanges(pfx)}
	}
	// family splits a zone's ranges.
	family := func(z intel.Zone, v6 bool) []netip.Prefix {
		var out []netip.Prefix
		for _, c := range z.CIDRs {
			if c.Addr().Is6() == v6 {
				out = append(out, c.Masked())
			}
		}
		return out
	}
	zones := map[string]intel.Zone{}
	byFamily := map[string][2][]netip.Prefix{} // each zone's v4 and v6 ranges
	for _, z := range s.Zones {
		if _, dup := zones[z.Name]; dup {
			return nil, fmt.Errorf("compile segmentation: zone %s twice", z.Name)
		}
		zones[z.Name] = z
		byFamily[z.Name] = [2][]netip.Prefix{family(z, false), family(z, true)}
	}
	// zoneSet returns the set for zone in family v6, "" for "*", and
	// ok false when the zone is unknown or has no range in the family.
	zoneSet := func(zone string, v6 bool) (string, bool) {
		if zone == intel.AnyZone {
			return "", true
		}
		fams, ok := byFamily[zone]
		if !ok {
			return "", false
		}
		ranges := fams[0]
		if v6 {
			ranges = fams[1]
		}
		if len(ranges) == 0 {
			return "", false
		}
		name := zoneSetName(zone, v6)
		addSet(name, v6, true, ranges)
		return name, true
	}
	hostIn := func(z intel.Zone) bool {
		return t.Addrs == nil || slices.ContainsFunc(t.Addrs, z.Contains)
	}

	// Mesh traffic (seg-input only).
	ports := slices.Clone(t.MeshPorts)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	for _, port := range ports {
		if port == 0 {
			continue
		}
		tag := fmt.Sprintf("mesh:%d", port)
		for _, v6 := range []bool{false, true} {
			for _, proto := range []uint8{protoTCP, protoUDP} {
				p.Input = append(p.Input,
					SegmentRule{Tag: tag, V6: v6, Proto: proto, PortFrom: port, PortTo: port, Verdict: VerdictAccept},
					SegmentRule{Tag: tag, V6: v6, Proto: proto, ReplyToPort: port, Verdict: VerdictAccept})
			}
		}
	}

	// Quarantines in force, and the management zones.
	var q4, q6, m4, m6 []netip.Prefix
	for _, q := range s.Quarantines {
		if !q.Active(now) {
			continue
		}
		if !q.ExpiresAt.IsZero() && (p.NextChange.IsZero() || q.ExpiresAt.Before(p.NextChange)) {
			p.NextChange = q.ExpiresAt
		}
		h := q.Host.Unmap()
		if h.Is4() {
			q4 = append(q4, netip.PrefixFrom(h, 32))
		} else {
			q6 = append(q6, netip.PrefixFrom(h, 128))
		}
	}
	for _, z := range s.Zones {
		if z.Management {
			m4 = append(m4, family(z, false)...)
			m6 = append(m6, family(z, true)...)
		}
	}
	var both []SegmentRule
	for _, f := range []struct {
		v6     bool
		q, m   []netip.Prefix
		qn, mn string
	}{{false, q4, m4, segQ4, segM4}, {true, q6, m6, segQ6, segM6}} {
		if len(f.q) == 0 {
			continue
		}
		p.Quarantined += len(f.q)
		addSet(f.qn, f.v6, false, f.q)
		addSet(f.mn, f.v6, true, f.m)
		both = append(both,
			SegmentRule{Tag: "quarantine:src", V6: f.v6, SrcSet: f.qn, DstSet: f.mn, DstNot: true, Verdict: VerdictDrop},
			SegmentRule{Tag: "quarantine:dst", V6: f.v6, DstSet: f.qn, SrcSet: f.mn, SrcNot: true, Verdict: VerdictDrop})
	}

	// Flows, in evaluation order, then the default denies.
	var inFlows, fwdFlows []SegmentRule
	for _, f := range s.Ordered() {
		var rules []SegmentRule
		for _, v6 := range []bool{false, true} {
			src, ok1 := zoneSet(f.From, v6)
			dst, ok2 := zoneSet(f.To, v6)
			if !ok1 || !ok2 {
				continue
			}
			r := SegmentRule{Tag: "flow:" + f.Name, V6: v6, SrcSet: src, DstSet: dst, Verdict: VerdictAccept}
			switch f.Proto {
			case intel.ProtoTCP:
				r.Proto = protoTCP
			case intel.ProtoUDP:
				r.Proto = protoUDP
			case intel.ProtoICMP:
				r.Proto = protoICMP
				if v6 {
					r.Proto = protoICMPv6
				}
			case intel.ProtoAny:
			default:
				return nil, fmt.Errorf("compile segmentation: flow %s: proto %q", f.Name, f.Proto)
			}
			if f.Action == intel.FlowDeny {
				if f.Observe() {
					r.Log = ObservePrefix + f.Name
				} else {
					r.Verdict = VerdictDrop
				}
			}
			if len(f.Ports) == 0 {
				rules = append(rules, r)
				continue
			}
			for _, pr := range f.Ports {
				r.PortFrom, r.PortTo = pr.From, pr.To
				rules = append(rules, r)
			}
		}
		if len(rules) == 0 {
			continue
		}
		p.Flows++
		fwdFlows = append(fwdFlows, rules...)
		if to, ok := zones[f.To]; f.To == intel.AnyZone || ok && hostIn(to) {
			inFlows = append(inFlows, rules...)
		}
	}
	var inDeny, fwdDeny []SegmentRule
	for _, z := range s.Zones {
		if !z.DefaultDeny {
			continue
		}
		for _, v6 := range []bool{false, true} {
			dst, ok := zoneSet(z.Name, v6)
			if !ok {
				continue
			}
			r := SegmentRule{Tag: "default-deny:" + z.Name, V6: v6, DstSet: dst, Verdict: VerdictDrop}
			fwdDeny = append(fwdDeny, r)
			if hostIn(z) {
				inDeny = append(inDeny, r)
			}
		}
	}
	p.Input = slices.Concat(p.Input, both, inFlows, inDeny)
	if t.Forward {
		p.Forward = slices.Concat(both, fwdFlows, fwdDeny)
	}

	// Only the sets a rule names.
	used := map[string]bool{}
	for _, r := range slices.Concat(p.Input, p.Forward) {
		used[r.SrcSet], used[r.DstSet] = true, true
	}
	for name, st := range sets {
		if used[name] {
			p.Sets = append(p.Sets, *st)
		}
	}
	slices.SortFunc(p.Sets, func(a, b SegmentSet) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("compile segmentation: hash: %w", err)
	}
	sum := sha256.Sum256(b)
	p.Hash = hex.EncodeToString(sum[:])
	return p, nil
}

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct {
	From netip.Addr `json:"from"`
	To   netip.Addr `json:"to"`
}

func (r AddrRange) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// mergeRanges returns the union of ps as sorted, disjoint, non-adjacent
// ranges: an interval set holds no overlapping ranges, and two adjacent
// ones would share an element.
func mergeRanges(ps []netip.Prefix) []AddrRange {
	if len(ps) == 0 {
		return nil
	}
	rs := make([]AddrRange, len(ps))
	for i, p := range ps {
		rs[i] = AddrRange{p.Masked().Addr(), lastAddr(p)}
	}
	slices.SortFunc(rs, func(a, b AddrRange) int { return a.From.Compare(b.From) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if next := last.To.Next(); !next.IsValid() || r.From.Compare(next) <= 0 {
			if r.To.Compare(last.To) > 0 {
				last.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
