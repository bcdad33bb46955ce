package nft_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/nft"
)

// segGen makes random segmentations over a small address space, so that
// zones overlap, flows collide and quarantined hosts sit in zones.
type segGen struct {
	r   *rand.Rand
	now time.Time
}

func (g segGen) addr(v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(g.r.IntN(4)), 15: byte(g.r.IntN(256))})
	}
	return netip.AddrFrom4([4]byte{10, 0, byte(g.r.IntN(4)), byte(g.r.IntN(256))})
}

func (g segGen) prefix(v6 bool) netip.Prefix {
	if v6 {
		return netip.PrefixFrom(g.addr(true), 110+g.r.IntN(19)).Masked()
	}
	return netip.PrefixFrom(g.addr(false), 14+g.r.IntN(19)).Masked()
}

var genPorts = []uint16{22, 53, 80, 443, 445, 5432, 8080}

func (g segGen) segmentation() intel.Segmentation {
	var s intel.Segmentation
	nz := 1 + g.r.IntN(5)
	for i := range nz {
		z := intel.Zone{Name: fmt.Sprintf("z%d", i), DefaultDeny: g.r.IntN(3) == 0, Management: g.r.IntN(4) == 0}
		for range 1 + g.r.IntN(4) {
			p := g.prefix(g.r.IntN(3) == 0)
			if !slices.Contains(z.CIDRs, p) {
				z.CIDRs = append(z.CIDRs, p)
			}
		}
		s.Zones = append(s.Zones, z)
	}
	zone := func() string {
		if g.r.IntN(4) == 0 {
			return intel.AnyZone
		}
		if g.r.IntN(10) == 0 {
			return "missing" // a zone the site does not hold
		}
		return s.Zones[g.r.IntN(nz)].Name
	}
	for i := range g.r.IntN(9) {
		f := intel.Flow{Name: fmt.Sprintf("f%d", i), From: zone(), To: zone(),
			Action: intel.FlowAllow, Priority: g.r.IntN(3) * 10}
		if f.From == intel.AnyZone && f.To == intel.AnyZone {
			f.To = s.Zones[0].Name
		}
		if g.r.IntN(2) == 0 {
			f.Action = intel.FlowDeny
			if g.r.IntN(3) == 0 {
				f.Mode = intel.FlowObserve
			}
		}
		f.Proto = []string{intel.ProtoAny, intel.ProtoTCP, intel.ProtoUDP, intel.ProtoICMP}[g.r.IntN(4)]
		if f.Proto == intel.ProtoTCP || f.Proto == intel.ProtoUDP {
			for range g.r.IntN(3) {
				a, b := genPorts[g.r.IntN(len(genPorts))], genPorts[g.r.IntN(len(genPorts))]
				f.Ports = append(f.Ports, intel.PortRange{From: min(a, b), To: max(a, b)})
			}
		}
		s.Flows = append(s.Flows, f)
	}
	for range g.r.IntN(3) {
		q := intel.Quarantine{Host: g.addr(g.r.IntN(3) == 0), By: "op", Since: g.now.Add(-time.Hour)}
		if g.r.IntN(3) == 0 {
			q.ExpiresAt = g.now.Add(-time.Minute) // no longer in force
		} else if g.r.IntN(2) == 0 {
			q.ExpiresAt = g.now.Add(time.Hour)
		}
		s.Quarantines = append(s.Quarantines, q)
	}
	return s
}

// pick returns an address of family v6 that is often one the
// segmentation names.
func (g segGen) pick(s intel.Segmentation, v6 bool) netip.Addr {
	var named []netip.Addr
	for _, z := range s.Zones {
		for _, c := range z.CIDRs {
			if c.Addr().Is6() == v6 {
				named = append(named, c.Addr(), lastAddr(c))
			}
		}
	}
	for _, q := range s.Quarantines {
		if q.Host.Is6() == v6 {
			named = append(named, q.Host)
		}
	}
	if len(named) > 0 && g.r.IntN(2) == 0 {
		return named[g.r.IntN(len(named))]
	}
	return g.addr(v6)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

var protoNames = map[uint8]string{1: intel.ProtoICMP, 58: intel.ProtoICMP, 6: intel.ProtoTCP, 17: intel.ProtoUDP, 47: "gre"}

// same reports whether the compiled program's decision is Decide's.
func same(want intel.Verdict, verdict, tag string, observed bool) bool {
	if want.Drop != (verdict == nft.VerdictDrop) || want.Observed != observed {
		return false
	}
	if h, ok := strings.CutPrefix(want.By, "quarantine:"); ok && h != "" {
		return strings.HasPrefix(tag, "quarantine:")
	}
	return want.By == tag
}

// TestSegmentCompileMatchesDecide is the property: for random
// segmentations and random packets, the compiled rules decide what
// intel.Segmentation.Decide decides, in the forward chain (all flows)
// and in the input chain (packets to the host's addresses).
func TestSegmentCompileMatchesDecide(t *testing.T) {
	g := segGen{r: rand.New(rand.NewPCG(1, 2)), now: time.Unix(1_800_000_000, 0)}
	checked, drops, observed := 0, 0, 0
	for range 2000 {
		s := g.segmentation()
		host := []netip.Addr{g.pick(s, false), g.pick(s, true)}
		p, err := nft.CompileSegmentation(s, nft.SegmentTarget{Addrs: host, Forward: true}, g.now)
		if err != nil {
			t.Fatal(err)
		}
		all, err := nft.CompileSegmentation(s, nft.SegmentTarget{}, g.now)
		if err != nil {
			t.Fatal(err)
		}
		for range 100 {
			v6 := g.r.IntN(3) == 0
			src, dst := g.pick(s, v6), g.pick(s, v6)
			proto := []uint8{1, 6, 17, 47}[g.r.IntN(4)]
			if v6 && proto == 1 {
				proto = 58
			}
			var port uint16
			if proto == 6 || proto == 17 {
				port = genPorts[g.r.IntN(len(genPorts))] + uint16(g.r.IntN(3)) - 1
			}
			want := s.Decide(g.now, src, dst, protoNames[proto], port)
			verdict, tag, obs := p.Eval("forward", nft.Packet{Src: src, Dst: dst, Proto: proto, Port: port})
			if !same(want, verdict, tag, obs) {
				t.Fatalf("forward %s -> %s proto %d port %d: compiled %s by %q (observed %v), Decide %+v\nsegmentation %+v\nrules %+v",
					src, dst, proto, port, verdict, tag, obs, want, s, p.Forward)
			}
			hdst := host[0]
			if v6 {
				hdst = host[1]
			}
			want = s.Decide(g.now, src, hdst, protoNames[proto], port)
			verdict, tag, obs = p.Eval("input", nft.Packet{Src: src, Dst: hdst, Proto: proto, Port: port})
			if !same(want, verdict, tag, obs) {
				t.Fatalf("input %s -> %s proto %d port %d: compiled %s by %q (observed %v), Decide %+v\nsegmentation %+v\nrules %+v",
					src, hdst, proto, port, verdict, tag, obs, want, s, p.Input)
			}
			// Addresses unknown: every flow in the input chain.
			want = s.Decide(g.now, src, dst, protoNames[proto], port)
			verdict, tag, obs = all.Eval("input", nft.Packet{Src: src, Dst: dst, Proto: proto, Port: port})
			if !same(want, verdict, tag, obs) {
				t.Fatalf("input (all flows) %s -> %s proto %d port %d: compiled %s by %q, Decide %+v", src, dst, proto, port, verdict, tag, want)
			}
			checked += 2
			if want.Drop {
				drops++
			}
			if want.Observed {
				observed++
			}
		}
	}
	// The generator must exercise every outcome, or the property is weak.
	if drops < checked/20 || observed == 0 {
		t.Fatalf("generator too tame: %d packets, %d drops, %d observed", checked, drops, observed)
	}
	t.Logf("%d packets, %d dropped, %d observed", checked, drops, observed)
}

func TestSegmentCompileLayout(t *testing.T) {
	pfx := netip.MustParsePrefix
	now := time.Unix(1_800_000_000, 0)
	s := intel.Segmentation{
		Zones: []intel.Zone{
			{Name: "office", CIDRs: []netip.Prefix{pfx("10.1.0.0/24"), pfx("10.1.1.0/24"), pfx("10.1.0.128/25"), pfx("fd00:1::/64")}},
			{Name: "servers", CIDRs: []netip.Prefix{pfx("10.2.0.0/16")}, DefaultDeny: true},
			{Name: "mgmt", CIDRs: []netip.Prefix{pfx("10.9.0.0/24")}, Management: true},
		},
		Flows: []intel.Flow{
			{Name: "office-web", From: "office", To: "servers", Proto: intel.ProtoTCP, Ports: []intel.PortRange{{From: 443, To: 443}, {From: 8000, To: 8080}}, Action: intel.FlowAllow, Priority: 10},
			{Name: "office-db", From: "office", To: "servers", Proto: intel.ProtoTCP, Ports: []intel.PortRange{{From: 5432, To: 5432}}, Action: intel.FlowDeny, Mode: intel.FlowObserve, Priority: 10},
			{Name: "no-office-ping", From: "*", To: "office", Proto: intel.ProtoICMP, Action: intel.FlowDeny},
		},
		Quarantines: []intel.Quarantine{
			{Host: netip.MustParseAddr("10.1.0.66"), Since: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)},
		},
	}
	host := []netip.Addr{netip.MustParseAddr("10.2.0.1")}
	p, err := nft.CompileSegmentation(s, nft.SegmentTarget{Addrs: host, MeshPorts: []uint16{4001, 4001}}, now)
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, r := range p.Input {
		if len(tags) == 0 || tags[len(tags)-1] != r.Tag {
			tags = append(tags, r.Tag)
		}
	}
	want := []string{"mesh:4001", "quarantine:src", "quarantine:dst", "flow:office-db", "flow:office-web", "default-deny:servers"}
	if !slices.Equal(tags, want) {
		t.Errorf("input tags %v, want %v (the ping flow goes to office, not to this host)", tags, want)
	}
	if len(p.Forward) != 0 {
		t.Errorf("forward chain compiled for a host that does not route: %+v", p.Forward)
	}
	office, ok := p.Set("seg-z4-office")
	if !ok || len(office.Ranges) != 1 || office.Ranges[0].String() != "10.1.0.0-10.1.1.255" {
		t.Errorf("office v4 set %+v: want the two /24s and the nested /25 merged into one range", office)
	}
	if !p.NextChange.Equal(now.Add(time.Hour)) {
		t.Errorf("NextChange %v, want the quarantine's expiry", p.NextChange)
	}
	for _, r := range p.Input {
		if r.Tag == "flow:office-db" && (r.Log != "meshward-observe office-db" || r.Verdict != nft.VerdictAccept) {
			t.Errorf("observe flow rule %+v: want log prefix and accept", r)
		}
	}
	// The same input compiles to the same hash; a change changes it.
	p2, _ := nft.CompileSegmentation(s, nft.SegmentTarget{Addrs: host, MeshPorts: []uint16{4001}}, now)
	if p2.Hash != p.Hash {
		t.Error("same segmentation, different hash")
	}
	s.Flows[0].Ports[0].To = 444
	p3, _ := nft.CompileSegmentation(s, nft.SegmentTarget{Addrs: host, MeshPorts: []uint16{4001}}, now)
	if p3.Hash == p.Hash {
		t.Error("changed flow, same hash")
	}
	// Mesh traffic passes before quarantine.
	if v, tag, _ := p.Eval("input", nft.Packet{Src: netip.MustParseAddr("10.1.0.66"), Dst: host[0], Proto: 6, Port: 4001}); v != nft.VerdictAccept || tag != "mesh:4001" {
		t.Errorf("quarantined host to the mesh port: %s by %q, want accept by mesh:4001", v, tag)
	}
}
