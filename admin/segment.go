package admin

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// SegmentationSource is what an OperatorService may also answer: the
// mesh's zones, flows and quarantines as this node has applied them.
type SegmentationSource interface {
	// Segmentation returns the zones by name, the flows in evaluation
	// order and the quarantines active at now by host.
	Segmentation(now time.Time) intel.Segmentation
}

// ZoneList is the answer of GET /v1/zones.
type ZoneList struct {
	Zones []intel.Zone `json:"zones"`
}

// FlowList is the answer of GET /v1/flows: the flows in evaluation order,
// and the flows that an earlier one covers entirely (accepted, but they
// never decide anything).
type FlowList struct {
	Flows    []intel.Flow        `json:"flows"`
	Warnings []intel.FlowWarning `json:"warnings"`
}

// QuarantineList is the answer of GET /v1/quarantines: the quarantines in
// force, by host.
type QuarantineList struct {
	Quarantines []intel.Quarantine `json:"quarantines"`
}

func (s *Server) segmentation() (intel.Segmentation, error) {
	src, ok := s.operatorSvc.(SegmentationSource)
	if !ok {
		return intel.Segmentation{}, fmt.Errorf("%w: this node does not hold the mesh's segmentation", ErrUnavailable)
	}
	return src.Segmentation(s.now()), nil
}

// flowWarnings names the flow that shadows f once f is committed: the
// node's flows with f in place of the flow of its name (the node may not
// have applied f yet). None when the node holds no segmentation.
func (s *Server) flowWarnings(f intel.Flow) []string {
	seg, err := s.segmentation()
	if err != nil {
		return nil
	}
	seg.Flows = append(slices.DeleteFunc(seg.Flows, func(g intel.Flow) bool { return g.Name == f.Name }), f)
	var out []string
	for _, w := range seg.FlowWarnings() {
		if w.Flow == f.Name {
			out = append(out, fmt.Sprintf("flow %s is shadowed by flow %s, which matches all it matches first: it will never decide anything", w.Flow, w.ShadowedBy))
		}
	}
	return out
}

func getZones(s *Server, _ *call) (any, error) {
	seg, err := s.segmentation()
	if err != nil {
		return nil, err
	}
	return ZoneList{Zones: nonNil(seg.Zones)}, nil
}

func getFlows(s *Server, _ *call) (any, error) {
	seg, err := s.segmentation()
	if err != nil {
		return nil, err
	}
	return FlowList{Flows: nonNil(seg.Flows), Warnings: nonNil(seg.FlowWarnings())}, nil
}

func getQuarantines(s *Server, _ *call) (any, error) {
	seg, err := s.segmentation()
	if err != nil {
		return nil, err
	}
	return QuarantineList{Quarantines: nonNil(seg.Quarantines)}, nil
}

// Zones lists the mesh's zones (GET /v1/zones).
func (c *Client) Zones(ctx context.Context) ([]intel.Zone, error) {
	var out ZoneList
	err := c.do(ctx, "GET", "/v1/zones", nil, nil, &out)
	return out.Zones, err
}

// Flows lists the mesh's flows in evaluation order and the flows shadowed
// by an earlier one (GET /v1/flows).
func (c *Client) Flows(ctx context.Context) (FlowList, error) {
	var out FlowList
	err := c.do(ctx, "GET", "/v1/flows", nil, nil, &out)
	return out, err
}

// Quarantines lists the quarantines in force (GET /v1/quarantines).
func (c *Client) Quarantines(ctx context.Context) ([]intel.Quarantine, error) {
	var out QuarantineList
	err := c.do(ctx, "GET", "/v1/quarantines", nil, nil, &out)
	return out.Quarantines, err
}
