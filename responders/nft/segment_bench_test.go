package nft_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/nft"
)

// bigSegmentation is 40 zones of 250 disjoint /30 ranges each (10,000
// CIDRs) and 1,000 flows between them, each on one port range.
func bigSegmentation() intel.Segmentation {
	var s intel.Segmentation
	for z := range 40 {
		zone := intel.Zone{Name: fmt.Sprintf("zone%02d", z), DefaultDeny: z%10 == 0}
		for i := range 250 {
			n := z*250 + i
			a := netip.AddrFrom4([4]byte{10, byte(n >> 6), byte(n&63) << 2, 0})
			zone.CIDRs = append(zone.CIDRs, netip.PrefixFrom(a, 30))
		}
		s.Zones = append(s.Zones, zone)
	}
	for f := range 1000 {
		action := intel.FlowAllow
		if f%3 == 0 {
			action = intel.FlowDeny
		}
		s.Flows = append(s.Flows, intel.Flow{Name: fmt.Sprintf("flow%04d", f), From: s.Zones[f%40].Name, To: s.Zones[(f*7+1)%40].Name,
			Proto: intel.ProtoTCP, Ports: []intel.PortRange{{From: uint16(1000 + f), To: uint16(1000 + f + f%5)}}, Action: action, Priority: f % 100})
	}
	return s
}

func BenchmarkSegmentCompile(b *testing.B) {
	s := bigSegmentation()
	now := time.Unix(1_800_000_000, 0)
	var p *nft.SegmentProgram
	for b.Loop() {
		var err error
		if p, err = nft.CompileSegmentation(s, nft.SegmentTarget{Forward: true, MeshPorts: []uint16{7946}}, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.Input)+len(p.Forward)), "rules")
	b.ReportMetric(float64(len(p.Sets)), "sets")
}

// BenchmarkSegmentApply replaces the whole segmentation (2,000 rules, 40
// interval sets of 250 ranges) in one transaction, and reads it back.
func BenchmarkSegmentApply(b *testing.B) {
	ns := newNS(b)
	f := newFirewall(b, ns, nft.WithTable("mw-bench-seg"))
	p, err := nft.CompileSegmentation(bigSegmentation(), nft.SegmentTarget{Forward: true, MeshPorts: []uint16{7946}}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.Run("apply", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.ApplySegmentation(ctx, p, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(p.Input)+len(p.Forward)), "rules")
	})
	b.Run("drift", func(b *testing.B) {
		for b.Loop() {
			d, err := f.SegmentDrift(ctx, p)
			if err != nil || len(d) > 0 {
				b.Fatal(d, err)
			}
		}
	})
}
