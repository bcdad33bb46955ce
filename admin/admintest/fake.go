// Package admintest provides an in-memory admin.Node, a helper that serves
// the admin API on a temporary Unix socket, and helpers that make tokens,
// token files and clients of it, for tests of the API and of its clients.
package admintest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/warninglist"
	"github.com/meshward/meshward/store"
)

// Node is an in-memory admin.Node. Its fields may be set before it is
// used; afterwards use its methods, which are safe for concurrent use.
type Node struct {
	mu        sync.Mutex
	NodeID    string
	St        admin.Status
	MemberSet []admin.Member
	PeerSet   []admin.Peer
	mesh      map[string]intel.Policy
	local     map[string]intel.Policy
	sightings []store.SightingRecord // newest received first
	reports   []store.ReportRecord   // newest received first
	seq       uint64
	// Clock stamps the reports PublishReport stores and is the time at
	// which SubmitOperator commits; nil means time.Now.
	Clock func() time.Time
	// Mesh is the mesh ID operator commands must name.
	Mesh string
	// feedPolicies and warninglist are what the feed policy and
	// warninglist commands committed (feedpolicy.go).
	feedPolicies []intel.FeedPolicy
	warninglist  []warninglist.Entry
	// seg is what the zone, flow and quarantine commands committed
	// (segment.go).
	seg intel.Segmentation
	// OperatorSet and TokenSet are the mesh's operator keys and join
	// tokens (AddOperator registers a key).
	OperatorSet []admin.OperatorInfo
	TokenSet    []admin.JoinTokenInfo
	// Corroboration and Floors record the last set_corroboration and
	// set_floors commands.
	Corroboration struct {
		MinNodes int
		Window   time.Duration
	}
	Floors intel.Floors
	// MinRisk records the last set_min_risk command.
	MinRisk int
	// SubmitErr, when set, is returned by SubmitOperator once the command
	// is verified, before it changes anything.
	SubmitErr error
	commands  []intel.OperatorCommand
	nonces    map[string]bool
	pageCalls int
}

var (
	_ admin.Node            = (*Node)(nil)
	_ admin.OperatorService = (*Node)(nil)
)

// NewNode returns a fake node with the given ID and a healthy status.
func NewNode(id string) *Node {
	return &Node{
		NodeID: id,
		St: admin.Status{
			Node:   admin.NodeStatus{ID: id, Site: "test"},
			Mesh:   admin.MeshStatus{Leader: id, IsLeader: true, RaftState: "Leader", Voters: []string{id}, Members: 1},
			Health: admin.Health{OK: true},
		},
		MemberSet: []admin.Member{{ID: id, Site: "test", Voter: true, Leader: true}},
		Mesh:      "mesh-" + id,
		Floors:    intel.DefaultFloors(),
		mesh:      map[string]intel.Policy{},
		local:     map[string]intel.Policy{},
		nonces:    map[string]bool{},
	}
}

// ID implements admin.Node.
func (n *Node) ID() string { return n.NodeID }

// Status implements admin.Node.
func (n *Node) Status(context.Context) (admin.Status, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.St, nil
}

// Members implements admin.Node.
func (n *Node) Members(context.Context) ([]admin.Member, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.MemberSet), nil
}

// Peers implements admin.Node.
func (n *Node) Peers(context.Context) ([]admin.Peer, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.PeerSet), nil
}

func active(m map[string]intel.Policy, now time.Time) []intel.Policy {
	var out []intel.Policy
	for _, p := range m {
		if p.Active(now) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// MeshPolicies implements admin.Node.
func (n *Node) MeshPolicies(now time.Time) []intel.Policy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return active(n.mesh, now)
}

// MeshPolicy implements admin.Node.
func (n *Node) MeshPolicy(id string, now time.Time) (intel.Policy, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.mesh[id]
	if !ok || !p.Active(now) {
		return intel.Policy{}, false
	}
	return p, true
}

// MeshPolicyPage implements admin.Node as the consensus does: up to limit
// (<= 0: 100; at most 10,000) active policies with IDs after after, in ID
// order, and the last ID of the page when more follow.
func (n *Node) MeshPolicyPage(after string, limit int, now time.Time) ([]intel.Policy, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pageCalls++
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10_000)
	var out []intel.Policy
	for _, p := range active(n.mesh, now) {
		if p.ID > after {
			out = append(out, p)
		}
	}
	if len(out) <= limit {
		return out, ""
	}
	return out[:limit], out[limit-1].ID
}

// PageCalls is how many times MeshPolicyPage was called.
func (n *Node) PageCalls() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pageCalls
}

// LocalDecisions implements admin.Node.
func (n *Node) LocalDecisions(now time.Time) []intel.Policy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return active(n.local, now)
}

// PutLocalDecision implements admin.Node.
func (n *Node) PutLocalDecision(_ context.Context, p intel.Policy) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.local[p.ID] = p
	return nil
}

// DeleteLocalDecision implements admin.Node.
func (n *Node) DeleteLocalDecision(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.local, id)
	return nil
}

// AddSighting records a sighting as received now-newest.
func (n *Node) AddSighting(r store.SightingRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sightings = append([]store.SightingRecord{r}, n.sightings...)
}

// AddPolicy adds a mesh-wide (local=false) or local policy directly.
func (n *Node) AddPolicy(p intel.Policy, local bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if local {
		n.local[p.ID] = p
	} else {
		n.mesh[p.ID] = p
	}
}

// Sightings implements admin.Node.
func (n *Node) Sightings(_ context.Context, limit int) ([]store.SightingRecord, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := slices.Clone(n.sightings)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// SightingsFor implements admin.Node.
func (n *Node) SightingsFor(_ context.Context, ind intel.Indicator) ([]store.SightingRecord, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []store.SightingRecord
	for i := len(n.sightings) - 1; i >= 0; i-- {
		if n.sightings[i].Sighting.Indicator == ind {
			out = append(out, n.sightings[i])
		}
	}
	return out, nil
}

// AddReport records an indicator report as received now-newest.
func (n *Node) AddReport(r store.ReportRecord) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reports = append([]store.ReportRecord{r}, n.reports...)
}

// PublishReport implements admin.Node: it validates the report as the
// node does (wrapping admin.ErrInvalid) and stores it as this node's,
// with the next sequence number.
func (n *Node) PublishReport(_ context.Context, r intel.IndicatorReport) (uint64, error) {
	if err := r.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	t := n.now()
	n.reports = append([]store.ReportRecord{{Origin: n.NodeID, Seq: n.seq, Report: r, Received: t, Sent: t}}, n.reports...)
	return n.seq, nil
}

// Reports implements admin.Node.
func (n *Node) Reports(_ context.Context, limit int) ([]store.ReportRecord, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := slices.Clone(n.reports)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
