package admintest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

var _ admin.SegmentationSource = (*Node)(nil)

// applySegment applies the zone, flow and quarantine commands as the FSM
// would, with its checks of names (not its checks of the mesh's
// addresses). Caller holds n.mu.
func (n *Node) applySegment(c intel.OperatorCommand, keyID string) error {
	s := &n.seg
	switch c.Op {
	case intel.OpSetZone:
		s.Zones = slices.DeleteFunc(s.Zones, func(z intel.Zone) bool { return z.Name == c.Zone.Name })
		s.Zones = append(s.Zones, *c.Zone)
		slices.SortFunc(s.Zones, func(a, b intel.Zone) int { return strings.Compare(a.Name, b.Name) })
	case intel.OpRemoveZone:
		if _, ok := s.Zone(c.ZoneName); !ok {
			return fmt.Errorf("%w: no zone %q", admin.ErrNotFound, c.ZoneName)
		}
		for _, f := range s.Flows {
			if f.From == c.ZoneName || f.To == c.ZoneName {
				return fmt.Errorf("%w: flow %s names zone %s", admin.ErrRefused, f.Name, c.ZoneName)
			}
		}
		s.Zones = slices.DeleteFunc(s.Zones, func(z intel.Zone) bool { return z.Name == c.ZoneName })
	case intel.OpSetFlow:
		for _, z := range []string{c.Flow.From, c.Flow.To} {
			if _, ok := s.Zone(z); !ok && z != intel.AnyZone {
				return fmt.Errorf("%w: flow %s names zone %q, which the mesh does not hold", admin.ErrRefused, c.Flow.Name, z)
			}
		}
		s.Flows = slices.DeleteFunc(s.Flows, func(f intel.Flow) bool { return f.Name == c.Flow.Name })
		s.Flows = append(s.Flows, *c.Flow)
		s.Flows = s.Ordered()
	case intel.OpRemoveFlow:
		if !slices.ContainsFunc(s.Flows, func(f intel.Flow) bool { return f.Name == c.FlowName }) {
			return fmt.Errorf("%w: no flow %q", admin.ErrNotFound, c.FlowName)
		}
		s.Flows = slices.DeleteFunc(s.Flows, func(f intel.Flow) bool { return f.Name == c.FlowName })
	case intel.OpQuarantine:
		q := intel.Quarantine{Host: c.Host, Reason: c.Reason, By: "operator:" + keyID, Since: c.Header.Issued.UTC()}
		if c.TTLSeconds > 0 {
			q.ExpiresAt = q.Since.Add(c.TTL())
		}
		for _, z := range s.Zones {
			if z.Contains(c.Host) {
				q.Zone = z.Name
				break
			}
		}
		s.Quarantines = slices.DeleteFunc(s.Quarantines, func(o intel.Quarantine) bool { return o.Host == c.Host })
		s.Quarantines = append(s.Quarantines, q)
		slices.SortFunc(s.Quarantines, func(a, b intel.Quarantine) int { return a.Host.Compare(b.Host) })
	case intel.OpRelease:
		if !slices.ContainsFunc(s.Quarantines, func(o intel.Quarantine) bool { return o.Host == c.Host }) {
			return fmt.Errorf("%w: %s is not quarantined", admin.ErrNotFound, c.Host)
		}
		s.Quarantines = slices.DeleteFunc(s.Quarantines, func(o intel.Quarantine) bool { return o.Host == c.Host })
	}
	return nil
}

// Segmentation returns the zones, flows and the quarantines active at now
// committed to the fake.
func (n *Node) Segmentation(now time.Time) intel.Segmentation {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := intel.Segmentation{Zones: slices.Clone(n.seg.Zones), Flows: slices.Clone(n.seg.Flows)}
	for _, q := range n.seg.Quarantines {
		if q.Active(now) {
			out.Quarantines = append(out.Quarantines, q)
		}
	}
	return out
}
