package testnet

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// The distributed scenario: an attacker tries a couple of passwords at
// each site, never enough to fire any site's rule; the sites' partial
// sightings (sub-threshold summaries) sum past the mesh's distributed
// rule and the attacker is blocked mesh-wide. Benign users who fail once
// at a few sites are not.

// BenignUser fails one login at each of the first Sites sites.
type BenignUser struct {
	Addr  netip.Addr
	Sites int
}

// DistributedOptions configure the distributed scenario. Every node sends
// summaries; node 0 founds the mesh with the distributed rule.
type DistributedOptions struct {
	Options
	// MinSites, Threshold and SiteCap are the mesh's distributed rule
	// (defaults 5, 14, 4).
	MinSites, Threshold, SiteCap int
	// Interval is the summaries' batch interval (default 200ms).
	Interval time.Duration
	// Attacker is the source (default 203.0.113.99); AttemptsPerSite its
	// failed logins at each site (default 2: under every site's threshold).
	Attacker        netip.Addr
	AttemptsPerSite int
	// Benign users fail once at a few sites, before the attack.
	Benign []BenignUser
	// Timeout bounds the run (default 3 minutes).
	Timeout time.Duration
}

// DistributedReport is what a run of the distributed scenario measured.
type DistributedReport struct {
	Nodes     int    `json:"nodes"`
	Indicator string `json:"indicator"`
	// FullSightings counts the attacker's full (not partial) sightings in
	// every node's store, and Detections every node's local detections:
	// both 0 when no site's rule ever fired.
	FullSightings int    `json:"full_sightings"`
	Detections    uint64 `json:"detections"`
	// BlockedOn counts the nodes enforcing the mesh-wide block; LineBlockMs
	// is from the attack's lines written to the last of them.
	BlockedOn   int     `json:"blocked_on"`
	LineBlockMs float64 `json:"line_block_ms"`
	// PolicyReason is the committed block's reason; its evidence names
	// PolicyEvidence signed partials or sightings.
	PolicyReason   string `json:"policy_reason"`
	PolicyEvidence int    `json:"policy_evidence"`
	// BenignBlocked names the benign users blocked (none, if all is well);
	// BenignProposals counts the proposals (full or distributed) the
	// nodes made before the attack, all on benign users.
	BenignBlocked   []string `json:"benign_blocked"`
	BenignProposals uint64   `json:"benign_proposals"`
	// Partials and PartialBytes are the partial sightings sent by all
	// nodes and their signed bytes; BytesPerNodeSecond is PartialBytes per
	// node per second of the run after startup (benign and attack phases).
	Partials           uint64  `json:"partials"`
	PartialBytes       uint64  `json:"partial_bytes"`
	BytesPerNodeSecond float64 `json:"bytes_per_node_second"`
	StartupMs          float64 `json:"startup_ms"`
}

// FailedLoginLines returns n classic-syslog OpenSSH failed-password lines
// from addr against host, one second apart, ending at end.
func FailedLoginLines(host string, addr netip.Addr, n int, end time.Time) []byte {
	var b bytes.Buffer
	for i := range n {
		ts := end.Add(-time.Duration(n-1-i) * time.Second).Format(time.Stamp)
		fmt.Fprintf(&b, "%s %s sshd[%d]: Failed password for alice from %s port %d ssh2\n", ts, host, 30000+i, addr, 41000+i)
	}
	return b.Bytes()
}

func (o *DistributedOptions) defaults() {
	if o.Nodes == 0 {
		o.Nodes = 10
	}
	if o.MinSites == 0 {
		o.MinSites, o.Threshold, o.SiteCap = 5, 14, 4
	}
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if !o.Attacker.IsValid() {
		o.Attacker = netip.MustParseAddr("203.0.113.99")
	}
	if o.AttemptsPerSite == 0 {
		o.AttemptsPerSite = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	configure := o.Configure
	o.Configure = func(i int, cfg *node.Config) {
		d := &cfg.Corroboration.Distributed
		d.Summaries, d.Interval = true, o.Interval
		d.MinSites, d.Threshold, d.SiteCap = o.MinSites, o.Threshold, o.SiteCap
		if configure != nil {
			configure(i, cfg)
		}
	}
}

// RunDistributed starts a mesh whose every node sends summaries, has each
// benign user fail once at its sites and waits until every node stored
// and evaluated their partials, then has the attacker try
// AttemptsPerSite passwords at every site and waits until every node
// enforces a mesh-wide block of it. The report is returned with the error
// when the mesh did not converge.
func RunDistributed(ctx context.Context, o DistributedOptions) (*DistributedReport, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t0 := time.Now()
	m, err := Start(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	ind := intel.IndicatorFromAddr(o.Attacker)
	rep := &DistributedReport{Nodes: len(m.Nodes), Indicator: ind.Value, StartupMs: ms(time.Since(t0))}
	started := time.Now()

	// Benign users first; every node must hold and have evaluated all
	// their partials before the attack starts.
	for _, b := range o.Benign {
		if b.Sites > len(m.Nodes) {
			return nil, fmt.Errorf("testnet: benign user %s at %d sites, only %d nodes", b.Addr, b.Sites, len(m.Nodes))
		}
		for i := range b.Sites {
			if err := m.AppendAuthLog(i, FailedLoginLines(m.Nodes[i].Site(), b.Addr, 1, time.Now())); err != nil {
				return nil, err
			}
		}
	}
	if err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		for _, b := range o.Benign {
			bi := intel.IndicatorFromAddr(b.Addr)
			for i, n := range m.Nodes {
				if got := partialSites(n, bi, started.Add(-time.Minute)); got < b.Sites {
					return false, fmt.Sprintf("node %d holds partials of %s from %d of %d sites", i, b.Addr, got, b.Sites)
				}
			}
		}
		return evaluated(m)
	}); err != nil {
		return rep, fmt.Errorf("testnet: benign partials: %w", err)
	}
	for _, n := range m.Nodes {
		rep.BenignProposals += n.Stats().Proposals
		for _, b := range o.Benign {
			if _, ok := n.Consensus().Policy(intel.PolicyID(intel.ActionBlock, intel.IndicatorFromAddr(b.Addr)), time.Now()); ok {
				rep.BenignBlocked = append(rep.BenignBlocked, fmt.Sprintf("%s on %s", b.Addr, n.Site()))
			}
		}
	}

	// The attack: a few tries at every site.
	written := time.Now()
	for i, n := range m.Nodes {
		if err := m.AppendAuthLog(i, FailedLoginLines(n.Site(), o.Attacker, o.AttemptsPerSite, written)); err != nil {
			return nil, err
		}
	}
	werr := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			tl, _ := n.Timeline(ind)
			if tl.MeshEnforced().IsZero() || !n.Enforcing(ind) {
				return false, fmt.Sprintf("node %d (%s) does not yet enforce a mesh-wide block of %s", i, n.Site(), ind.Value)
			}
		}
		return true, ""
	})
	elapsed := time.Since(started)
	var last time.Time
	for _, n := range m.Nodes {
		tl, _ := n.Timeline(ind)
		if e := tl.MeshEnforced(); !e.IsZero() && n.Enforcing(ind) {
			rep.BlockedOn++
			if e.After(last) {
				last = e
			}
		}
		rep.Detections += n.Stats().Detections
		recs, err := n.Store().SightingsFor(ind, written.Add(-time.Hour))
		if err != nil {
			return rep, err
		}
		for _, r := range recs {
			if !r.Sighting.Partial {
				rep.FullSightings++
			}
		}
		rep.Partials += metric(n, "meshward_partials_sent_total")
		rep.PartialBytes += metric(n, "meshward_partial_bytes_total")
	}
	if !last.IsZero() {
		rep.LineBlockMs = ms(last.Sub(written))
	}
	if p, ok := m.Nodes[0].Consensus().Policy(intel.PolicyID(intel.ActionBlock, ind), time.Now()); ok {
		rep.PolicyReason, rep.PolicyEvidence = p.Reason, len(p.Evidence)
	}
	rep.BytesPerNodeSecond = float64(rep.PartialBytes) / float64(len(m.Nodes)) / elapsed.Seconds()
	if werr != nil {
		return rep, fmt.Errorf("testnet: mesh did not converge: %w", werr)
	}
	return rep, nil
}

// partialSites counts the members whose partial sightings of ind, last
// seen since, node n holds.
func partialSites(n *node.Node, ind intel.Indicator, since time.Time) int {
	recs, err := n.Store().SightingsFor(ind, since)
	if err != nil {
		return 0
	}
	sites := map[string]bool{}
	for _, r := range recs {
		if r.Sighting.Partial {
			sites[r.Origin] = true
		}
	}
	return len(sites)
}

// evaluated reports whether every node evaluated every sighting it stored
// (each stored sighting, own or received, queues one evaluation, run or
// counted as dropped).
func evaluated(m *Mesh) (bool, string) {
	for i, n := range m.Nodes {
		st := n.Stats()
		if st.Evaluations+st.EvaluationsDrop < st.SightingsStored {
			return false, fmt.Sprintf("node %d evaluated %d of %d sightings", i, st.Evaluations+st.EvaluationsDrop, st.SightingsStored)
		}
	}
	return true, ""
}

// metric reads a counter of n's registry (0 when absent).
func metric(n *node.Node, name string) uint64 {
	mfs, err := n.Metrics().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var s float64
		for _, m := range mf.GetMetric() {
			s += m.GetCounter().GetValue()
		}
		return uint64(s)
	}
	return 0
}
