package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshward/meshward/intel"
)

// A scenario file is a mesh's topology and a timeline of steps: attacks,
// faults, operator commands and expectations, run in order by RunScenario
// (`meshward testnet run FILE`). It is decoded strictly: an unknown field
// or a bad value is an error naming the file, the line and the field.
//
//	name: leader-kill
//	topology:
//	  nodes: 5
//	  groups: {minority: [0, 1], majority: rest}
//	timeline:
//	  - attack: {kind: brute_force, from: 203.0.113.66, nodes: [1, 2]}
//	  - expect: {committed: 203.0.113.66, within: 30s}
//	  - kill: leader
//	  - expect:
//	      enforced: {indicator: 203.0.113.66, on: all}
//	      within: 20s
//	  - restart: killed
//
// Node selectors (on, nodes, kill, restart, ...) are a node index, a list
// of indices, a group name, "all" (every running node), "leader" (the
// Raft leader when the step runs) or "killed" (the nodes killed and not
// yet restarted).

// Scenario is a decoded scenario file.
type Scenario struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Topology    Topology `yaml:"topology"`
	Timeline    []Step   `yaml:"timeline"`
	// Timeout bounds the whole run (default DefaultScenarioTimeout: 3
	// minutes, and a second for each node above SimProfileAbove).
	Timeout Duration `yaml:"timeout"`
	// Measure is the indicator the report's timings and charts follow
	// (default: the first attack's source).
	Measure *IndicatorRef `yaml:"measure"`

	file      string
	stepLines []int
}

// Topology is the mesh a scenario runs on.
type Topology struct {
	// Nodes is the mesh's size (RunOptions.Size overrides it).
	Nodes int `yaml:"nodes"`
	// MinNodes is the corroboration threshold k (default 2).
	MinNodes int `yaml:"min_nodes"`
	// LocalBlock lets detecting nodes block at once (default false).
	LocalBlock bool `yaml:"local_block"`
	// Profile is the nodes' resource profile ("default" or "sim").
	Profile string `yaml:"profile"`
	// Groups name sets of nodes: a list of indices, or "rest" (every
	// node in no other group). Partitions cut between groups.
	Groups map[string]GroupSpec `yaml:"groups"`
	// Links are latency and loss between groups: they need network
	// namespaces, which an in-process mesh does not have, so a scenario
	// with links is refused when run (see RunScenario).
	Links []Link `yaml:"links"`
	// Summaries has every node send sub-threshold summaries (partial
	// sightings) every interval, for the mesh's distributed rule (which
	// an operator step turns on).
	Summaries *Summaries `yaml:"summaries"`
	// RateLimit and RateBurst replace the gossip rate limit of each
	// forwarding peer (messages per second, burst).
	RateLimit float64 `yaml:"rate_limit"`
	RateBurst int     `yaml:"rate_burst"`
}

// Link is latency and loss between two groups.
type Link struct {
	Between []string `yaml:"between"`
	Latency Duration `yaml:"latency"`
	Loss    float64  `yaml:"loss"`
}

// Summaries configure the nodes' partial sightings.
type Summaries struct {
	Interval Duration `yaml:"interval"`
}

// GroupSpec is a group's members: indices, or Rest.
type GroupSpec struct {
	Nodes []int
	Rest  bool
	line  int
}

// UnmarshalYAML reads a list of indices or "rest".
func (g *GroupSpec) UnmarshalYAML(v *yaml.Node) error {
	g.line = v.Line
	if v.Kind == yaml.ScalarNode && v.Value == "rest" {
		g.Rest = true
		return nil
	}
	if err := v.Decode(&g.Nodes); err != nil {
		return fmt.Errorf("line %d: a group is a list of node indices or \"rest\", got %q", v.Line, v.Value)
	}
	return nil
}

// Step is one entry of the timeline: exactly one action, run when the
// previous step is done and not before At after the timeline began.
type Step struct {
	// Name labels the step in the report (default: its action).
	Name string `yaml:"name"`
	// At is the earliest offset from the start of the timeline.
	At Duration `yaml:"at"`

	Attack    *AttackStep   `yaml:"attack"`
	Kill      *NodeSel      `yaml:"kill"`
	Restart   *NodeSel      `yaml:"restart"`
	Partition []string      `yaml:"partition"`
	Heal      bool          `yaml:"heal"`
	Skew      *SkewStep     `yaml:"skew"`
	Rogue     *RogueStep    `yaml:"rogue"`
	Stranger  *StrangerStep `yaml:"stranger"`
	Operator  *OperatorStep `yaml:"operator"`
	Expect    *Expect       `yaml:"expect"`
}

// Attack kinds.
const (
	AttackBruteForce = "brute_force"  // SSH password guessing, Failures lines per node
	AttackPortScan   = "port_scan"    // kernel firewall LOG lines, Ports distinct ports per node
	AttackLowAndSlow = "low_and_slow" // Failures failed logins per node, under every site's rule
)

// AttackStep writes an attack into the auth logs of Nodes.
type AttackStep struct {
	Kind  string  `yaml:"kind"`
	From  Address `yaml:"from"`
	Nodes NodeSel `yaml:"nodes"`
	// Failures per node (brute_force default 12, low_and_slow default 2).
	Failures int `yaml:"failures"`
	// Ports probed per node (port_scan, default 20).
	Ports int `yaml:"ports"`
}

// SkewStep sets the clocks of Nodes By ahead (negative: behind) of the
// real time.
type SkewStep struct {
	Nodes NodeSel  `yaml:"nodes"`
	By    Duration `yaml:"by"`
}

// RogueStep makes a member misbehave with its own valid key: Forge
// signs Count sightings of an address it never saw (default 3), Flood
// publishes Flood sightings of distinct made-up addresses as fast as it
// can, past the peers' rate limits.
type RogueStep struct {
	Node  NodeSel  `yaml:"node"`
	Forge *Address `yaml:"forge"`
	Count int      `yaml:"count"`
	Flood int      `yaml:"flood"`
}

// StrangerStep has a libp2p host that is not a member connect to Node
// and open each of Protocols ("raft", "raft-rpc", "sync", "query"),
// writing a few bytes on each.
type StrangerStep struct {
	Node      NodeSel  `yaml:"node"`
	Protocols []string `yaml:"protocols"`
}

// OperatorStep has the mesh's operator sign a command, committed
// through node 0 (or the first running node).
type OperatorStep struct {
	// Distributed sets the mesh's distributed rule.
	Distributed *DistributedRule `yaml:"distributed"`
	// Block blocks an indicator mesh-wide for an hour.
	Block *IndicatorRef `yaml:"block"`
}

// DistributedRule is corroboration.distributed.
type DistributedRule struct {
	MinSites  int `yaml:"min_sites"`
	Threshold int `yaml:"threshold"`
	SiteCap   int `yaml:"site_cap"`
}

// Expect waits, polling on the nodes' state, until each of its
// conditions holds, or fails when Within (default 30s) passes first.
// NeverBlocked and NotEnforced are checked once every running node has
// evaluated every sighting it stored, and NeverBlocked again when the
// run ends.
type Expect struct {
	Within       Duration       `yaml:"within"`
	Committed    *IndicatorRef  `yaml:"committed"`
	Enforced     *EnforcedCheck `yaml:"enforced"`
	NotEnforced  *EnforcedCheck `yaml:"not_enforced"`
	NeverBlocked []IndicatorRef `yaml:"never_blocked"`
	Refused      *RefusedCheck  `yaml:"refused"`
	Running      *NodeSel       `yaml:"running"`
	// Voters: the Raft configuration has at least this many voters (or
	// every running node is one, when fewer run).
	Voters int `yaml:"voters"`
}

// EnforcedCheck: every node of On holds the committed mesh-wide block
// of Indicator and enforces it (NotEnforced: none of them enforces it).
type EnforcedCheck struct {
	Indicator IndicatorRef `yaml:"indicator"`
	On        NodeSel      `yaml:"on"`
}

// RefusedCheck: the counter Metric (a Prometheus counter of the nodes,
// e.g. meshward_gossip_rejected_total), restricted to the series whose
// reason label is Reason when set, sums to at least Min over the nodes
// of On (default all).
type RefusedCheck struct {
	Metric string  `yaml:"metric"`
	Reason string  `yaml:"reason"`
	Min    int     `yaml:"min"`
	On     NodeSel `yaml:"on"`
}

// Duration is a time.Duration written as "10s".
type Duration struct {
	time.Duration
	line int
}

// UnmarshalYAML parses a Go duration.
func (d *Duration) UnmarshalYAML(v *yaml.Node) error {
	d.line = v.Line
	x, err := time.ParseDuration(v.Value)
	if err != nil || v.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not a duration (such as 500ms, 10s, 2m)", v.Line, v.Value)
	}
	d.Duration = x
	return nil
}

// Address is an IP address.
type Address struct {
	netip.Addr
	line int
}

// UnmarshalYAML parses an IPv4 or IPv6 address.
func (a *Address) UnmarshalYAML(v *yaml.Node) error {
	a.line = v.Line
	x, err := netip.ParseAddr(v.Value)
	if err != nil || v.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not an IP address", v.Line, v.Value)
	}
	a.Addr = x
	return nil
}

// IndicatorRef is an indicator (an address, a range, a domain...).
type IndicatorRef struct {
	intel.Indicator
	line int
}

// UnmarshalYAML parses an indicator.
func (r *IndicatorRef) UnmarshalYAML(v *yaml.Node) error {
	r.line = v.Line
	x, err := intel.ParseIndicator(v.Value)
	if err != nil || v.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not an indicator: %v", v.Line, v.Value, err)
	}
	r.Indicator = x
	return nil
}

// NodeSel selects nodes; see the package's scenario file format.
type NodeSel struct {
	// Indices, or Name: "all", "leader", "killed" or a group.
	Indices []int
	Name    string
	line    int
}

// Node selector names.
const (
	SelAll    = "all"
	SelLeader = "leader"
	SelKilled = "killed"
)

// UnmarshalYAML reads an index, a list of indices or a name.
func (s *NodeSel) UnmarshalYAML(v *yaml.Node) error {
	s.line = v.Line
	switch v.Kind {
	case yaml.ScalarNode:
		if i, err := strconv.Atoi(v.Value); err == nil {
			s.Indices = []int{i}
			return nil
		}
		if v.Value == "" {
			return fmt.Errorf("line %d: empty node selector", v.Line)
		}
		s.Name = v.Value
		return nil
	case yaml.SequenceNode:
		if err := v.Decode(&s.Indices); err != nil {
			return fmt.Errorf("line %d: a list of nodes holds node indices only", v.Line)
		}
		return nil
	}
	return fmt.Errorf("line %d: a node selector is an index, a list of indices, %q, %q, %q or a group name", v.Line, SelAll, SelLeader, SelKilled)
}

func (s NodeSel) empty() bool { return s.Name == "" && s.Indices == nil }

func (s NodeSel) String() string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprint(s.Indices)
}

// LoadScenario reads and checks a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return ParseScenario(path, b)
}

// ParseScenario decodes a scenario strictly and checks it; name is the
// file the errors name.
func ParseScenario(name string, b []byte) (*Scenario, error) {
	fail := func(err error) error { return fmt.Errorf("scenario %s: %w", name, err) }
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail(errors.New("empty file"))
		}
		return nil, fail(errors.New(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fail(errors.New("more than one YAML document"))
	}
	// The lines of the timeline's steps, for the errors below.
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil && len(root.Content) == 1 {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "timeline" {
				for _, st := range m.Content[i+1].Content {
					s.stepLines = append(s.stepLines, st.Line)
				}
			}
		}
	}
	s.file = name
	if err := s.check(); err != nil {
		return nil, fail(err)
	}
	return &s, nil
}

// File is the file the scenario was read from.
func (s *Scenario) File() string { return s.file }

func (s *Scenario) stepLine(i int) int {
	if i < len(s.stepLines) {
		return s.stepLines[i]
	}
	return 0
}

// check validates what decoding could not: sizes, kinds, references.
func (s *Scenario) check() error {
	t := s.Topology
	switch {
	case s.Name == "":
		return errors.New("name: required")
	case t.Nodes < 1:
		return fmt.Errorf("topology.nodes: must be at least 1, got %d", t.Nodes)
	case t.MinNodes < 0:
		return fmt.Errorf("topology.min_nodes: must not be negative, got %d", t.MinNodes)
	case t.RateLimit < 0 || t.RateBurst < 0:
		return errors.New("topology.rate_limit, rate_burst: must not be negative")
	case len(s.Timeline) == 0:
		return errors.New("timeline: at least one step is required")
	case s.Timeout.Duration < 0:
		return fmt.Errorf("line %d: timeout: must not be negative", s.Timeout.line)
	}
	if _, err := profileFor(t.Profile); err != nil {
		return fmt.Errorf("topology.profile: %w", err)
	}
	rest := 0
	for name, g := range t.Groups {
		if slices.Contains([]string{SelAll, SelLeader, SelKilled, "rest"}, name) {
			return fmt.Errorf("line %d: topology.groups: %q is a reserved name", g.line, name)
		}
		if g.Rest {
			rest++
		}
		for _, i := range g.Nodes {
			if i < 0 {
				return fmt.Errorf("line %d: topology.groups.%s: negative node index %d", g.line, name, i)
			}
		}
	}
	if rest > 1 {
		return errors.New("topology.groups: only one group may be \"rest\"")
	}
	for _, l := range t.Links {
		if len(l.Between) != 2 {
			return fmt.Errorf("line %d: topology.links: between names two groups", l.Latency.line)
		}
		for _, g := range l.Between {
			if _, ok := t.Groups[g]; !ok {
				return fmt.Errorf("topology.links: between: no group %q", g)
			}
		}
		if l.Loss < 0 || l.Loss > 1 || l.Latency.Duration < 0 {
			return fmt.Errorf("topology.links: loss is a fraction in [0, 1] and latency not negative")
		}
	}
	if t.Summaries != nil && t.Summaries.Interval.Duration < 0 {
		return errors.New("topology.summaries.interval: must not be negative")
	}
	for i := range s.Timeline {
		if err := s.checkStep(&s.Timeline[i]); err != nil {
			return fmt.Errorf("timeline[%d] (line %d): %w", i, s.stepLine(i), err)
		}
	}
	return nil
}

// action names the step's action; check made sure there is one.
func (st *Step) action() string {
	switch {
	case st.Attack != nil:
		return "attack"
	case st.Kill != nil:
		return "kill"
	case st.Restart != nil:
		return "restart"
	case st.Partition != nil:
		return "partition"
	case st.Heal:
		return "heal"
	case st.Skew != nil:
		return "skew"
	case st.Rogue != nil:
		return "rogue"
	case st.Stranger != nil:
		return "stranger"
	case st.Operator != nil:
		return "operator"
	case st.Expect != nil:
		return "expect"
	}
	return ""
}

func (s *Scenario) checkSel(field string, sel NodeSel, required bool) error {
	if sel.empty() {
		if required {
			return fmt.Errorf("%s: required", field)
		}
		return nil
	}
	for _, i := range sel.Indices {
		if i < 0 {
			return fmt.Errorf("line %d: %s: negative node index %d", sel.line, field, i)
		}
	}
	if sel.Name != "" && !slices.Contains([]string{SelAll, SelLeader, SelKilled}, sel.Name) {
		if _, ok := s.Topology.Groups[sel.Name]; !ok {
			return fmt.Errorf("line %d: %s: %q is neither a group nor %q, %q or %q", sel.line, field, sel.Name, SelAll, SelLeader, SelKilled)
		}
	}
	return nil
}

func (s *Scenario) checkStep(st *Step) error {
	n := 0
	for _, set := range []bool{st.Attack != nil, st.Kill != nil, st.Restart != nil, st.Partition != nil, st.Heal,
		st.Skew != nil, st.Rogue != nil, st.Stranger != nil, st.Operator != nil, st.Expect != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("a step has exactly one of attack, kill, restart, partition, heal, skew, rogue, stranger, operator, expect; this one has %d", n)
	}
	if st.At.Duration < 0 {
		return fmt.Errorf("at: must not be negative")
	}
	switch {
	case st.Attack != nil:
		a := st.Attack
		if !a.From.IsValid() {
			return errors.New("attack.from: required")
		}
		switch a.Kind {
		case AttackBruteForce, AttackLowAndSlow, AttackPortScan:
		default:
			return fmt.Errorf("attack.kind: %q: allowed values are %s, %s and %s", a.Kind, AttackBruteForce, AttackPortScan, AttackLowAndSlow)
		}
		if a.Failures < 0 || a.Failures > 1000 || a.Ports < 0 || a.Ports > 1000 {
			return errors.New("attack.failures, ports: from 0 to 1000")
		}
		return s.checkSel("attack.nodes", a.Nodes, true)
	case st.Kill != nil:
		return s.checkSel("kill", *st.Kill, true)
	case st.Restart != nil:
		return s.checkSel("restart", *st.Restart, true)
	case st.Partition != nil:
		if len(st.Partition) < 2 {
			return errors.New("partition: name at least two groups")
		}
		for _, g := range st.Partition {
			if _, ok := s.Topology.Groups[g]; !ok {
				return fmt.Errorf("partition: no group %q in topology.groups", g)
			}
		}
	case st.Skew != nil:
		if st.Skew.By.Duration == 0 {
			return errors.New("skew.by: required (a duration, negative for behind)")
		}
		return s.checkSel("skew.nodes", st.Skew.Nodes, true)
	case st.Rogue != nil:
		r := st.Rogue
		if (r.Forge == nil) == (r.Flood == 0) {
			return errors.New("rogue: exactly one of forge and flood")
		}
		if r.Count < 0 || r.Count > 100 || r.Flood < 0 || r.Flood > 100000 {
			return errors.New("rogue.count: 0 to 100; rogue.flood: 0 to 100000")
		}
		return s.checkSel("rogue.node", r.Node, true)
	case st.Stranger != nil:
		if len(st.Stranger.Protocols) == 0 {
			return errors.New("stranger.protocols: name at least one")
		}
		for _, p := range st.Stranger.Protocols {
			if _, ok := strangerProtocols[p]; !ok {
				return fmt.Errorf("stranger.protocols: %q: allowed values are %s", p, strings.Join(slices.Sorted(maps.Keys(strangerProtocols)), ", "))
			}
		}
		return s.checkSel("stranger.node", st.Stranger.Node, true)
	case st.Operator != nil:
		o := st.Operator
		if (o.Distributed == nil) == (o.Block == nil) {
			return errors.New("operator: exactly one of distributed and block")
		}
		if d := o.Distributed; d != nil && (d.MinSites < 1 || d.Threshold < 1 || d.SiteCap < 0) {
			return errors.New("operator.distributed: min_sites and threshold at least 1, site_cap not negative")
		}
	case st.Expect != nil:
		e := st.Expect
		if e.Within.Duration < 0 {
			return errors.New("expect.within: must not be negative")
		}
		if e.Voters < 0 {
			return errors.New("expect.voters: must not be negative")
		}
		if e.Committed == nil && e.Enforced == nil && e.NotEnforced == nil && e.NeverBlocked == nil && e.Refused == nil && e.Running == nil && e.Voters == 0 {
			return errors.New("expect: name at least one of committed, enforced, not_enforced, never_blocked, refused, running, voters")
		}
		for _, c := range []*EnforcedCheck{e.Enforced, e.NotEnforced} {
			if c == nil {
				continue
			}
			if c.Indicator.Value == "" {
				return errors.New("expect: enforced/not_enforced.indicator: required")
			}
			if err := s.checkSel("expect.on", c.On, true); err != nil {
				return err
			}
		}
		if r := e.Refused; r != nil {
			if !strings.HasPrefix(r.Metric, "meshward_") {
				return fmt.Errorf("expect.refused.metric: %q is not a meshward_ counter", r.Metric)
			}
			if r.Min < 1 {
				return errors.New("expect.refused.min: at least 1")
			}
			if err := s.checkSel("expect.refused.on", r.On, false); err != nil {
				return err
			}
		}
		if e.Running != nil {
			return s.checkSel("expect.running", *e.Running, true)
		}
	}
	return nil
}
