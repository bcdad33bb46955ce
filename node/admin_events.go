package node

import (
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/responders/siem"
)

// publishLive hands an event to the dashboard's event stream. A detection
// is published by publishDetection instead, once its sighting is stored
// and has its detection ID.
func (n *Node) publishLive(e siem.Event) {
	if e.Kind == siem.KindDetection || n.admin == nil {
		return
	}
	n.admin.PublishEvent(admin.LiveEvent{Kind: string(e.Kind), Time: e.Time, Node: e.Node, Origin: e.Origin,
		Indicator: e.Indicator, Detector: e.Detector, Technique: e.Technique, Severity: e.Severity, Count: e.Count,
		PolicyID: e.PolicyID, Action: e.Action, Backend: e.Backend})
}

// publishDetection publishes this node's detection carried by the sighting
// it signed with sequence number seq.
func (n *Node) publishDetection(s intel.Sighting, seq uint64, at time.Time) {
	if n.admin == nil {
		return
	}
	id := n.deps.ID
	n.admin.PublishEvent(admin.LiveEvent{Kind: admin.EventDetection, Time: at, Node: id, Origin: id,
		DetectionID: admin.DetectionID(id, seq), Indicator: s.Indicator, Detector: s.Detector,
		Technique: s.Technique, Severity: s.Severity, Count: s.Count})
}

// DashboardAddr is the address of the admin API's loopback plain-HTTP
// listener (admin.dashboard_http), or "".
func (n *Node) DashboardAddr() string { return n.admin.DashboardAddr() }
