package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// The lateral-movement scenario: an internal host of the zone "office"
// guesses SSH passwords on a neighbour at one site. That site's rule
// ssh-internal-bruteforce (response: quarantine; LateralRule) fires, and
// since the operator let that rule quarantine the office's hosts (the
// zone's auto_quarantine), the node proposes the host's quarantine with
// its signed sighting as proof; every node's FSM checks it and holds the
// quarantine, so every node's segmentation drops the host's traffic but
// to the management zone, and every node's compiled firewall program
// (node.Compliance().Segmentation) holds it. The same rule firing on an internal host in no
// zone changes nothing mesh-wide (counted on the detecting node).

// LateralRule is the rule the scenario gives every node (the rule of
// examples/rules/lateral-movement.yaml).
const LateralRule = `rules:
  - name: ssh-internal-bruteforce
    description: Repeated failed OpenSSH logins from a private address.
    match:
      - field: kind
        in: [ssh_failed, ssh_invalid_user, ssh_not_allowed]
      - field: src
        in: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7]
    threshold: 5
    window: 60s
    cooldown: 60s
    technique: T1021.004
    severity: high
    confidence: 80
    response: quarantine
`

// LateralOptions configure RunLateral.
type LateralOptions struct {
	Options
	// Site is the node whose log shows the movement (default 1).
	Site int
	// Host is the moving host, inside the office zone (default
	// 10.1.0.66); Stray is an internal host in no zone that also
	// triggers the rule (default 192.168.7.7).
	Host, Stray netip.Addr
	// TTL is the office zone's automatic quarantine bound (default 1h).
	TTL time.Duration
}

// LateralReport is what RunLateral saw.
type LateralReport struct {
	// QuarantinedOn counts the nodes holding the host's automatic
	// quarantine, and DroppedOn those whose segmentation drops its
	// traffic to another office host while letting it reach the
	// management zone.
	QuarantinedOn, DroppedOn int
	// CompiledOn counts the nodes whose compiled firewall program (the
	// desired state the node enforces, or reports in dry run) holds a
	// quarantined host.
	CompiledOn int
	// Quarantine is node 0's record of it.
	Quarantine intel.Quarantine
	// QuarantinedEverywhereMs is the time from the log lines' injection
	// to the quarantine on every node.
	QuarantinedEverywhereMs float64
	// StrayQuarantinedOn counts the nodes holding a quarantine of the
	// stray host (want 0); Stats are the detecting node's counts.
	StrayQuarantinedOn int
	Stats              node.QuarantineStats
	// Metrics are the detecting node's meshward_quarantine_auto_total
	// by result, as its registry gathers them.
	Metrics map[string]float64
	Nodes   int
}

// OK reports whether the scenario ended as it should.
func (r LateralReport) OK() bool {
	return r.Nodes > 0 && r.QuarantinedOn == r.Nodes && r.DroppedOn == r.Nodes && r.CompiledOn == r.Nodes && r.StrayQuarantinedOn == 0 &&
		r.Stats.Committed >= 1 && r.Stats.NotAllowed >= 1
}

// RunLateral starts a mesh (whose nodes all run LateralRule), runs the
// scenario and stops the mesh.
func RunLateral(ctx context.Context, o LateralOptions) (LateralReport, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Site == 0 {
		o.Site = 1
	}
	if o.Site < 0 || o.Site >= o.Nodes {
		return LateralReport{}, fmt.Errorf("testnet: site %d of %d nodes", o.Site, o.Nodes)
	}
	if !o.Host.IsValid() {
		o.Host = netip.MustParseAddr("10.1.0.66")
	}
	if !o.Stray.IsValid() {
		o.Stray = netip.MustParseAddr("192.168.7.7")
	}
	if o.TTL == 0 {
		o.TTL = time.Hour
	}
	rules, err := os.MkdirTemp("", "meshward-lateral-rules-")
	if err != nil {
		return LateralReport{}, fmt.Errorf("testnet: %w", err)
	}
	defer os.RemoveAll(rules)
	if err := os.WriteFile(filepath.Join(rules, "lateral.yaml"), []byte(LateralRule), 0o600); err != nil {
		return LateralReport{}, fmt.Errorf("testnet: %w", err)
	}
	configure := o.Configure
	o.Configure = func(i int, cfg *node.Config) {
		cfg.Detectors.RulesDir = rules
		if configure != nil {
			configure(i, cfg)
		}
	}
	m, err := Start(ctx, o.Options)
	if err != nil {
		return LateralReport{}, err
	}
	defer m.Close()
	return m.Lateral(ctx, o)
}

// Lateral runs the scenario on a running mesh whose nodes run
// LateralRule; o's Host, Stray, Site and TTL must be set.
func (m *Mesh) Lateral(ctx context.Context, o LateralOptions) (LateralReport, error) {
	rep := LateralReport{Nodes: len(m.Nodes)}
	op := m.Operator()
	office := intel.Zone{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		AutoQuarantine: &intel.AutoQuarantine{Rules: []string{"ssh-internal-bruteforce"}, MaxTTLSeconds: int64(o.TTL / time.Second)}}
	mgmt := intel.Zone{Name: "mgmt", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}, Management: true}
	for _, z := range []intel.Zone{office, mgmt} {
		if err := op.Submit(ctx, 0, intel.OperatorCommand{Op: intel.OpSetZone, Zone: &z}); err != nil {
			return rep, err
		}
	}
	if err := Poll(ctx, 20*time.Millisecond, func() (bool, string) {
		for i, n := range m.Nodes {
			if s := n.Consensus().Segmentation(time.Now()); len(s.Zones) != 2 {
				return false, fmt.Sprintf("node %d holds %d zones", i, len(s.Zones))
			}
		}
		return true, ""
	}); err != nil {
		return rep, fmt.Errorf("testnet: the zones: %w", err)
	}

	start := time.Now()
	lines := append(SSHBruteForceLog(m.Nodes[o.Site].Site(), o.Stray, 6, start), SSHBruteForceLog(m.Nodes[o.Site].Site(), o.Host, 6, start)...)
	if err := m.AppendAuthLog(o.Site, lines); err != nil {
		return rep, err
	}
	neighbour, manager := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.9.0.1")
	count := func() {
		rep.QuarantinedOn, rep.DroppedOn, rep.CompiledOn, rep.StrayQuarantinedOn = 0, 0, 0, 0
		now := time.Now()
		for i, n := range m.Nodes {
			c := n.Consensus()
			if q, ok := c.Quarantined(o.Host, now); ok && q.Rule == "ssh-internal-bruteforce" {
				rep.QuarantinedOn++
				if i == 0 {
					rep.Quarantine = q
				}
			}
			if _, ok := c.Quarantined(o.Stray, now); ok {
				rep.StrayQuarantinedOn++
			}
			if n.Compliance().Segmentation.Quarantined >= 1 {
				rep.CompiledOn++
			}
			s := c.Segmentation(now)
			if s.Decide(now, o.Host, neighbour, intel.ProtoTCP, 22).Drop && !s.Decide(now, o.Host, manager, intel.ProtoTCP, 22).Drop {
				rep.DroppedOn++
			}
		}
	}
	err := Poll(ctx, 10*time.Millisecond, func() (bool, string) {
		count()
		st := m.Nodes[o.Site].QuarantineStats()
		if rep.QuarantinedOn < rep.Nodes || rep.CompiledOn < rep.Nodes || st.NotAllowed == 0 {
			return false, fmt.Sprintf("quarantined on %d of %d nodes, in the compiled firewall of %d; detecting node %+v", rep.QuarantinedOn, rep.Nodes, rep.CompiledOn, st)
		}
		return true, ""
	})
	rep.QuarantinedEverywhereMs = float64(time.Since(start).Microseconds()) / 1000
	count()
	rep.Stats = m.Nodes[o.Site].QuarantineStats()
	if err != nil {
		return rep, fmt.Errorf("testnet: the quarantine: %w", err)
	}
	mfs, err := m.Nodes[o.Site].Metrics().Gather()
	if err != nil {
		return rep, fmt.Errorf("testnet: gather metrics: %w", err)
	}
	rep.Metrics = map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "meshward_quarantine_auto_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "result" {
					rep.Metrics[l.GetValue()] = mt.GetCounter().GetValue()
				}
			}
		}
	}
	return rep, nil
}
