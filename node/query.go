package node

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/query"
)

// Mesh-wide queries (package query): every node answers the questions of
// members about what it holds and enforces, and any node can put one
// question to the whole roster at once (Query), for the admin API's
// /v1/query and `meshward query`.

// DefaultQueryTimeout is the deadline of a mesh-wide query when the
// caller names none.
const DefaultQueryTimeout = 5 * time.Second

// maxQueryOrigins bounds the origins an indicator answer names.
const maxQueryOrigins = 64

// IndicatorAnswer is what one node holds and does about an indicator.
type IndicatorAnswer struct {
	Site      string `json:"site,omitempty"`
	Indicator string `json:"indicator"`
	// Sightings are the sightings of the indicator this node holds, from
	// every site; Local those this node made itself.
	Sightings int       `json:"sightings"`
	Local     int       `json:"local"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// Origins are the sites (node IDs) whose sightings it holds, at most
	// maxQueryOrigins.
	Origins   []string `json:"origins,omitempty"`
	Detectors []string `json:"detectors,omitempty"`
	// LocalDecision: this node blocks it on its own decision.
	LocalDecision bool `json:"local_decision"`
	// MeshPolicy is the mesh-wide policy in force on it, if any.
	MeshPolicy string `json:"mesh_policy,omitempty"`
	// Enforcing: this node's responders block it now.
	Enforcing bool `json:"enforcing"`
}

// PolicyAnswer is whether one node knows and enforces a mesh-wide policy.
type PolicyAnswer struct {
	Site      string `json:"site,omitempty"`
	Policy    string `json:"policy"`
	Known     bool   `json:"known"` // in force in this node's FSM
	Indicator string `json:"indicator,omitempty"`
	Action    string `json:"action,omitempty"`
	Enforcing bool   `json:"enforcing"`
}

// HealthAnswer is how one node is.
type HealthAnswer struct {
	Site          string  `json:"site,omitempty"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Peers         int     `json:"peers"`
	Leader        string  `json:"leader,omitempty"`
	Member        bool    `json:"member"`
	Policies      int     `json:"mesh_policies"`
	Load          float64 `json:"load_average"`
	// Version is the node's meshward version (absent from the answers
	// of nodes older than the field).
	Version string `json:"version,omitempty"`
}

// nodeVersion is the version a node reports: the one it was started
// with, else the module version of its binary, else "devel".
func nodeVersion(opts string) string {
	if opts != "" {
		return opts
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// QueryResult is one member's part of a mesh-wide query.
type QueryResult struct {
	query.Result
	Site string `json:"site,omitempty"`
}

// answerQuery answers a member's question from what this node holds.
func (n *Node) answerQuery(ctx context.Context, _ peer.ID, req query.Request) (any, error) {
	now := n.now()
	switch req.Kind {
	case query.KindIndicator:
		ind, err := intel.ParseIndicator(req.Indicator)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", query.ErrInvalidRequest, err)
		}
		return n.indicatorAnswer(ind, now)
	case query.KindPolicy:
		a := PolicyAnswer{Site: n.deps.Config.Site, Policy: req.Policy}
		if p, ok := n.deps.Consensus.Policy(req.Policy, now); ok {
			a.Known, a.Indicator, a.Action = true, p.Indicator.Value, string(p.Action)
			a.Enforcing = p.Action == intel.ActionBlock && n.Enforcing(p.Indicator)
		}
		return a, nil
	case query.KindCompliance:
		return n.complianceAnswer(), nil
	case query.KindHealth:
		cons := n.deps.Consensus
		return HealthAnswer{
			Site:          n.deps.Config.Site,
			UptimeSeconds: now.Sub(n.started).Seconds(),
			Peers:         len(n.deps.Host.Network().Peers()),
			Leader:        cons.Leader(),
			Member:        cons.IsMember(n.ID()),
			Policies:      cons.PolicyCount(),
			Load:          loadAverage(),
			Version:       nodeVersion(n.deps.Options.Version),
		}, nil
	}
	return nil, fmt.Errorf("%w: kind %q", query.ErrInvalidRequest, req.Kind)
}

func (n *Node) indicatorAnswer(ind intel.Indicator, now time.Time) (IndicatorAnswer, error) {
	a := IndicatorAnswer{Site: n.deps.Config.Site, Indicator: ind.Value}
	recs, err := n.deps.Store.SightingsFor(ind, time.Time{})
	if err != nil {
		return a, err
	}
	for _, r := range recs {
		s := r.Sighting
		if s.Partial {
			continue // a sub-threshold summary is not a sighting
		}
		a.Sightings++
		if r.Origin == n.ID() {
			a.Local++
		}
		if a.FirstSeen.IsZero() || s.FirstSeen.Before(a.FirstSeen) {
			a.FirstSeen = s.FirstSeen
		}
		if s.LastSeen.After(a.LastSeen) {
			a.LastSeen = s.LastSeen
		}
		if len(a.Origins) < maxQueryOrigins && !slices.Contains(a.Origins, r.Origin) {
			a.Origins = append(a.Origins, r.Origin)
		}
		if len(a.Detectors) < maxQueryOrigins && !slices.Contains(a.Detectors, s.Detector) {
			a.Detectors = append(a.Detectors, s.Detector)
		}
	}
	slices.Sort(a.Origins)
	slices.Sort(a.Detectors)
	for _, d := range n.state.LocalDecisions(now) {
		if d.Indicator == ind {
			a.LocalDecision = true
		}
	}
	for _, act := range []intel.Action{intel.ActionBlock, intel.ActionAllow} {
		if p, ok := n.deps.Consensus.Policy(intel.PolicyID(act, ind), now); ok {
			a.MeshPolicy = p.ID
		}
	}
	a.Enforcing = n.Enforcing(ind)
	return a, nil
}

// Query puts req to every member of the roster at once, this node
// included (answered here), and returns one result a member, ordered by
// site and node, once each has answered or failed or timeout (default
// DefaultQueryTimeout) has passed.
func (n *Node) Query(ctx context.Context, req query.Request, timeout time.Duration) ([]QueryResult, error) {
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	sites := make(map[string]string)
	var peers []peer.ID
	for _, m := range n.deps.Consensus.Members() {
		sites[m.ID] = m.Site
		if m.ID == n.ID() {
			continue
		}
		p, err := peer.Decode(m.ID)
		if err != nil {
			continue // the roster holds only valid IDs
		}
		peers = append(peers, p)
	}
	self := make(chan query.Result, 1)
	go func() {
		start := time.Now()
		r := query.Result{Node: n.ID(), Status: query.Answered}
		ans, err := n.answerQuery(ctx, n.deps.Host.ID(), req)
		if err == nil {
			r.Answer, err = json.Marshal(ans)
		}
		if err != nil {
			r.Status, r.Error, r.Answer = query.Failed, err.Error(), nil
		}
		r.Ms = float64(time.Since(start).Microseconds()) / 1000
		self <- r
	}()
	rs, err := query.Ask(ctx, n.deps.Host, peers, req, timeout)
	if err != nil {
		return nil, err
	}
	rs = append(rs, <-self)
	out := make([]QueryResult, len(rs))
	for i, r := range rs {
		out[i] = QueryResult{Result: r, Site: sites[r.Node]}
	}
	slices.SortFunc(out, func(a, b QueryResult) int {
		return cmp.Or(strings.Compare(a.Site, b.Site), strings.Compare(a.Node, b.Node))
	})
	return out, nil
}

// startQuery answers the members' questions until the node closes.
func (n *Node) startQuery() error {
	d := n.deps
	srv, err := query.NewServer(d.Host, query.ServerOptions{
		Member:  func(p peer.ID) bool { return d.Consensus.IsMember(p.String()) },
		Answer:  n.answerQuery,
		Refused: d.queryRefused,
	})
	if err != nil {
		return fmt.Errorf("query server: %w", err)
	}
	d.onClose("query server", srv.Close)
	return nil
}
