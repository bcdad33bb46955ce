package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// RunOptions adjust a scenario run.
type RunOptions struct {
	// Size, when positive, replaces topology.nodes (the tests run every
	// shipped scenario at a small size).
	Size int
	// Profile, when set, replaces topology.profile.
	Profile string
	// Dir holds the nodes' data directories (default: a temporary one).
	Dir    string
	Logger *slog.Logger
	// Progress receives the mesh's formation once a second.
	Progress func(Progress)
	// Narrate, when set, receives one line per step as it runs.
	Narrate io.Writer
}

// StepResult is what one step did.
type StepResult struct {
	Index   int     `json:"index"`
	Line    int     `json:"line"`
	Action  string  `json:"action"`
	Name    string  `json:"name,omitempty"`
	StartMs float64 `json:"start_ms"` // after the timeline began
	DoneMs  float64 `json:"done_ms"`
	Detail  string  `json:"detail,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// ExpectResult is one expectation's verdict.
type ExpectResult struct {
	Step   int    `json:"step"`
	Line   int    `json:"line"`
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	// Reason says why it failed (the last unmet condition).
	Reason string  `json:"reason,omitempty"`
	TookMs float64 `json:"took_ms"`
}

// ScenarioReport is the result of a scenario run.
type ScenarioReport struct {
	Scenario     string         `json:"scenario"`
	File         string         `json:"file"`
	Nodes        int            `json:"nodes"`
	Profile      string         `json:"profile"`
	Passed       bool           `json:"passed"`
	Failure      string         `json:"failure,omitempty"`
	StartupMs    float64        `json:"startup_ms"`
	DurationMs   float64        `json:"duration_ms"`
	Steps        []StepResult   `json:"steps"`
	Expectations []ExpectResult `json:"expectations"`
	// Indicator is the first attack's source: PerNode and the
	// percentiles measure its way through the mesh.
	Indicator     string       `json:"indicator,omitempty"`
	PropagationMs Percentiles  `json:"propagation_ms"`
	EnforceMs     Percentiles  `json:"enforce_ms"`
	PerNode       []NodeReport `json:"per_node,omitempty"`
	// Memory is the peak resident set of the nodes' processes when they
	// ran as processes of their own (namespace mode), summed, and each
	// one's beside; nil for an in-process run.
	Memory *ProcessStats `json:"memory,omitempty"`
}

// WriteJSON writes the report as one JSON object.
func (r *ScenarioReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the verdicts, one line each.
func (r *ScenarioReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "scenario %s (%s): %d nodes, profile %s, mesh formed in %.0f ms, ran %.0f ms\n\n", r.Scenario, r.File, r.Nodes, r.Profile, r.StartupMs, r.DurationMs)
	for _, s := range r.Steps {
		status := "ok"
		if s.Error != "" {
			status = "ERROR " + s.Error
		}
		fmt.Fprintf(w, "  step %2d line %3d  %-9s +%8.0f ms  %s %s\n", s.Index, s.Line, s.Action, s.StartMs, s.Detail, status)
	}
	fmt.Fprintln(w)
	for _, e := range r.Expectations {
		if e.Passed {
			fmt.Fprintf(w, "  PASS  line %3d  %s (%.0f ms)\n", e.Line, e.Name, e.TookMs)
		} else {
			fmt.Fprintf(w, "  FAIL  line %3d  %s: %s\n", e.Line, e.Name, e.Reason)
		}
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "\nmemory: the %d agents' peak resident sets sum to %.0f MB (%.1f MB a node)\n", len(m.Processes), m.PeakRSSMB, m.PeakRSSPerNodeMB)
	}
	if r.Indicator != "" {
		fmt.Fprintf(w, "\n%s: propagation p50 %.1f ms p99 %.1f ms; enforcement (first commit → each node) p50 %.1f ms p99 %.1f ms\n",
			r.Indicator, r.PropagationMs.P50, r.PropagationMs.P99, r.EnforceMs.P50, r.EnforceMs.P99)
	}
	if r.Passed {
		fmt.Fprintf(w, "\nPASSED: %d expectations met\n", len(r.Expectations))
	} else {
		fmt.Fprintf(w, "\nFAILED: %s\n", r.Failure)
	}
	return nil
}

// ErrLinksInProcess refuses topology.links: every node of an in-process
// mesh shares one loopback, with no per-link delay or loss to set.
var ErrLinksInProcess = errors.New("topology.links: latency and loss between groups need network namespaces; an in-process mesh cannot emulate them (run it in namespace mode: --netns, as root)")

// runner runs one scenario on one mesh.
type runner struct {
	s      *Scenario
	o      RunOptions
	m      *Mesh
	size   int
	groups map[string][]int
	clocks []*skewClock
	killed []int
	rep    *ScenarioReport
	t0     time.Time
	// never are the never_blocked indicators, checked again at the end.
	never []neverCheck
	// primary is the first attack's indicator; written when its lines
	// were written.
	primary intel.Indicator
	written time.Time
	rogueN  int
}

type neverCheck struct {
	step, line int
	ind        intel.Indicator
}

// RunScenario starts the scenario's mesh and runs its timeline. The
// report is returned in every case where the mesh started; err is nil
// only when the run passed. A failed expectation does not stop the run;
// a step that cannot be carried out does.
func RunScenario(ctx context.Context, s *Scenario, o RunOptions) (*ScenarioReport, error) {
	if len(s.Topology.Links) > 0 {
		return nil, fmt.Errorf("scenario %s: %w", s.file, ErrLinksInProcess)
	}
	r := &runner{s: s, o: o, size: s.Topology.Nodes}
	if o.Size > 0 {
		r.size = o.Size
	}
	if err := r.resolveGroups(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.file, err)
	}
	timeout := s.Timeout.Duration
	if timeout == 0 {
		timeout = DefaultScenarioTimeout(r.size)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	profile := s.Topology.Profile
	if o.Profile != "" {
		profile = o.Profile
	}
	r.clocks = make([]*skewClock, r.size)
	for i := range r.clocks {
		r.clocks[i] = &skewClock{}
	}
	t := s.Topology
	opts := Options{Nodes: r.size, Dir: o.Dir, Logger: o.Logger, MinNodes: t.MinNodes, LocalBlock: t.LocalBlock,
		Profile: profile, Progress: o.Progress,
		Clock: func(i int) func() time.Time { return r.clocks[i].now },
		Configure: func(_ int, cfg *node.Config) {
			if t.Summaries != nil {
				cfg.Corroboration.Distributed.Summaries = true
				if t.Summaries.Interval.Duration > 0 {
					cfg.Corroboration.Distributed.Interval = t.Summaries.Interval.Duration
				}
			}
			if t.RateLimit > 0 {
				cfg.Gossip.RateLimit = t.RateLimit
			}
			if t.RateBurst > 0 {
				cfg.Gossip.RateBurst = t.RateBurst
			}
		}}
	start := time.Now()
	m, err := Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.file, err)
	}
	defer m.Close()
	r.m = m
	r.rep = &ScenarioReport{Scenario: s.Name, File: s.file, Nodes: r.size, Profile: m.opts.Profile,
		StartupMs: ms(time.Since(start)), Steps: []StepResult{}, Expectations: []ExpectResult{}}
	r.t0 = time.Now()
	if s.Measure != nil {
		r.primary = s.Measure.Indicator
	}
	var stepErr error
	for i := range s.Timeline {
		if stepErr = r.step(ctx, i); stepErr != nil {
			break
		}
	}
	if stepErr == nil {
		r.checkNeverAtEnd(ctx)
	}
	r.rep.DurationMs = ms(time.Since(r.t0))
	r.fill()
	var failed []string
	if stepErr != nil {
		failed = append(failed, stepErr.Error())
	}
	for _, e := range r.rep.Expectations {
		if !e.Passed {
			failed = append(failed, fmt.Sprintf("line %d: %s: %s", e.Line, e.Name, e.Reason))
		}
	}
	if len(failed) > 0 {
		r.rep.Failure = strings.Join(failed, "; ")
		return r.rep, fmt.Errorf("scenario %s failed: %s", s.Name, r.rep.Failure)
	}
	r.rep.Passed = true
	return r.rep, nil
}

// resolveGroups turns the topology's groups into indices at this size.
func (r *runner) resolveGroups() error {
	r.groups = make(map[string][]int)
	taken := make(map[int]string)
	restName := ""
	for _, name := range slices.Sorted(maps.Keys(r.s.Topology.Groups)) {
		g := r.s.Topology.Groups[name]
		if g.Rest {
			restName = name
			continue
		}
		for _, i := range g.Nodes {
			if i >= r.size {
				return fmt.Errorf("line %d: topology.groups.%s: node %d, but the mesh has %d nodes", g.line, name, i, r.size)
			}
			if other, ok := taken[i]; ok {
				return fmt.Errorf("line %d: topology.groups.%s: node %d is in group %s too", g.line, name, i, other)
			}
			taken[i] = name
		}
		r.groups[name] = slices.Clone(g.Nodes)
	}
	if restName != "" {
		var rest []int
		for i := range r.size {
			if _, ok := taken[i]; !ok {
				rest = append(rest, i)
			}
		}
		if len(rest) == 0 {
			return fmt.Errorf("topology.groups.%s: \"rest\" is empty at %d nodes", restName, r.size)
		}
		r.groups[restName] = rest
	}
	return nil
}

// nodes resolves a selector when the step runs.
func (r *runner) nodes(ctx context.Context, sel NodeSel) ([]int, error) {
	for _, i := range sel.Indices {
		if i >= r.size {
			return nil, fmt.Errorf("line %d: node %d, but the mesh has %d nodes", sel.line, i, r.size)
		}
	}
	switch sel.Name {
	case "":
		return sel.Indices, nil
	case SelAll:
		var out []int
		for i := range r.size {
			if r.m.Running(i) {
				out = append(out, i)
			}
		}
		return out, nil
	case SelLeader:
		// The leader of the running nodes, once they agree on one.
		var leader int
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := Poll(wctx, 20*time.Millisecond, func() (bool, string) {
			leader = r.m.Leader()
			return leader >= 0, "no running node knows a running leader"
		}); err != nil {
			return nil, fmt.Errorf("line %d: leader: %w", sel.line, err)
		}
		return []int{leader}, nil
	case SelKilled:
		return slices.Clone(r.killed), nil
	}
	return r.groups[sel.Name], nil
}

func (r *runner) step(ctx context.Context, i int) error {
	return playStep(ctx, r.s, i, r.t0, r.rep, r.o.Narrate, r.do)
}

// playStep plays step i of s, whichever runner does it: it waits for the
// step's time (t0 plus its at), runs do, records the result in rep and
// tells narrate (when set).
func playStep(ctx context.Context, s *Scenario, i int, t0 time.Time, rep *ScenarioReport, narrate io.Writer,
	do func(ctx context.Context, i, line int, st *Step) (string, error)) error {
	st := &s.Timeline[i]
	line := s.stepLine(i)
	if at := t0.Add(st.At.Duration); time.Now().Before(at) {
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("line %d: %w before the step's time", line, ctx.Err())
		case <-t.C:
		}
	}
	res := StepResult{Index: i, Line: line, Action: st.action(), Name: st.Name, StartMs: ms(time.Since(t0))}
	detail, err := do(ctx, i, line, st)
	res.DoneMs, res.Detail = ms(time.Since(t0)), detail
	if err != nil {
		res.Error = err.Error()
	}
	rep.Steps = append(rep.Steps, res)
	if narrate != nil {
		fmt.Fprintf(narrate, "+%7.0f ms  line %3d  %-9s %s", res.StartMs, line, res.Action, detail)
		if err != nil {
			fmt.Fprintf(narrate, "  ERROR %v", err)
		}
		fmt.Fprintln(narrate)
	}
	if err != nil {
		return fmt.Errorf("line %d: %s: %w", line, res.Action, err)
	}
	return nil
}

func (r *runner) do(ctx context.Context, i, line int, st *Step) (string, error) {
	switch {
	case st.Attack != nil:
		return r.attack(ctx, st.Attack)
	case st.Kill != nil:
		nodes, err := r.nodes(ctx, *st.Kill)
		if err != nil {
			return "", err
		}
		if r.killed, err = killNodes(r.m, nodes, r.killed); err != nil {
			return "", err
		}
		return fmt.Sprintf("killed %v", nodes), nil
	case st.Restart != nil:
		nodes, err := r.nodes(ctx, *st.Restart)
		if err != nil {
			return "", err
		}
		if r.killed, err = restartNodes(ctx, r.m, nodes, r.killed); err != nil {
			return "", err
		}
		return fmt.Sprintf("restarted %v", nodes), nil
	case st.Partition != nil:
		var groups [][]int
		for _, g := range st.Partition {
			groups = append(groups, r.groups[g])
		}
		if err := r.m.Partition(groups...); err != nil {
			return "", err
		}
		return fmt.Sprintf("partitioned %v", groups), nil
	case st.Heal:
		r.m.Heal()
		return "healed", nil
	case st.Skew != nil:
		nodes, err := r.nodes(ctx, st.Skew.Nodes)
		if err != nil {
			return "", err
		}
		for _, n := range nodes {
			r.clocks[n].set(st.Skew.By.Duration)
		}
		return fmt.Sprintf("clocks of %v set %s off", nodes, st.Skew.By.Duration), nil
	case st.Rogue != nil:
		return r.rogue(ctx, st.Rogue)
	case st.Stranger != nil:
		return r.stranger(ctx, st.Stranger)
	case st.Operator != nil:
		return r.operator(ctx, st.Operator)
	case st.Expect != nil:
		return r.expect(ctx, i, line, st)
	}
	return "", errors.New("no action")
}

func (r *runner) attack(ctx context.Context, a *AttackStep) (string, error) {
	nodes, err := r.nodes(ctx, a.Nodes)
	if err != nil {
		return "", err
	}
	now := time.Now()
	for _, n := range nodes {
		if !r.m.Running(n) {
			return "", fmt.Errorf("node %d is not running", n)
		}
		site := r.m.Nodes[n].Site()
		var lines []byte
		switch a.Kind {
		case AttackBruteForce:
			lines = SSHBruteForceLog(site, a.From.Addr, cmpOr(a.Failures, 12), now)
		case AttackLowAndSlow:
			lines = FailedLoginLines(site, a.From.Addr, cmpOr(a.Failures, 2), now)
		case AttackPortScan:
			lines = PortScanLog(site, a.From.Addr, cmpOr(a.Ports, 20), now)
		}
		if err := r.m.AppendAuthLog(n, lines); err != nil {
			return "", err
		}
	}
	if ind := intel.IndicatorFromAddr(a.From.Addr); r.primary.Value == "" || r.primary == ind && r.written.IsZero() {
		r.primary, r.written = ind, now
	}
	return fmt.Sprintf("%s from %s at nodes %v", a.Kind, a.From.Addr, nodes), nil
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// PortScanLog returns kernel firewall LOG lines (as iptables/ufw write
// them through the kernel log) of ports probes from src to distinct
// destination ports of host, one every 100 ms, ending at end.
func PortScanLog(host string, src netip.Addr, ports int, end time.Time) []byte {
	var b strings.Builder
	for i := range ports {
		ts := end.Add(-time.Duration(ports-1-i) * 100 * time.Millisecond).Format(time.Stamp)
		fmt.Fprintf(&b, "%s %s kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC=%s DST=192.0.2.1 LEN=44 PROTO=TCP SPT=%d DPT=%d WINDOW=1024 SYN URGP=0\n",
			ts, host, src, 40000+i, 1000+i*7)
	}
	return []byte(b.String())
}

func (r *runner) operator(ctx context.Context, o *OperatorStep) (string, error) {
	via := -1
	for i := range r.size {
		if r.m.Running(i) {
			via = i
			break
		}
	}
	if via < 0 {
		return "", errors.New("no node is running")
	}
	op := r.m.Operator()
	switch {
	case o.Distributed != nil:
		d := o.Distributed
		cmd := intel.OperatorCommand{Op: intel.OpSetDistributed, DistributedMinSites: d.MinSites, DistributedThreshold: d.Threshold, DistributedSiteCap: d.SiteCap}
		if err := op.Submit(ctx, via, cmd); err != nil {
			return "", err
		}
		return fmt.Sprintf("distributed rule set through node %d: %d sites, threshold %d, cap %d", via, d.MinSites, d.Threshold, d.SiteCap), nil
	default:
		if err := op.Block(ctx, via, o.Block.Indicator, time.Hour, "scenario "+r.s.Name); err != nil {
			return "", err
		}
		return fmt.Sprintf("operator block of %s through node %d", o.Block.Value, via), nil
	}
}

// fill measures the primary indicator on the running nodes.
func (r *runner) fill() {
	if r.primary.Value == "" {
		return
	}
	r.rep.Indicator = r.primary.Value
	var first, firstCommit time.Time
	tls := make([]node.Timeline, r.size)
	for i, n := range r.m.Nodes {
		if !r.m.Running(i) {
			continue
		}
		tls[i], _ = n.Timeline(r.primary)
		tls[i] = r.clocks[i].unskew(tls[i])
		if d := tls[i].Detected; !d.IsZero() && (first.IsZero() || d.Before(first)) {
			first = d
		}
		if c := tls[i].Committed; !c.IsZero() && (firstCommit.IsZero() || c.Before(firstCommit)) {
			firstCommit = c
		}
	}
	if first.IsZero() {
		first = r.written // nothing detected locally (distributed): from the lines
	}
	if first.IsZero() {
		return // never attacked: nothing to measure from
	}
	var prop, enf []float64
	for i, n := range r.m.Nodes {
		if !r.m.Running(i) {
			continue
		}
		tl := tls[i]
		nr := NodeReport{Site: n.Site(), ID: n.ID(), Detected: !tl.Detected.IsZero(), PropagationMs: -1, CommitMs: -1, EnforceMs: -1, LineEnforceMs: -1,
			CommitToEnforceMs: -1, Enforcing: n.Enforcing(r.primary), Kind: string(n.Consensus().Kind())}
		if !tl.Received.IsZero() {
			nr.PropagationMs = ms(tl.Received.Sub(first))
			prop = append(prop, nr.PropagationMs)
		}
		if !tl.Committed.IsZero() {
			nr.CommitMs = ms(tl.Committed.Sub(first))
		}
		if e := tl.MeshEnforced(); !e.IsZero() && nr.Enforcing {
			nr.EnforceMs = ms(e.Sub(first))
			nr.LineEnforceMs = ms(e.Sub(r.written))
			if !firstCommit.IsZero() {
				nr.CommitToEnforceMs = ms(e.Sub(firstCommit))
				enf = append(enf, nr.CommitToEnforceMs)
			}
		}
		r.rep.PerNode = append(r.rep.PerNode, nr)
	}
	r.rep.PropagationMs, r.rep.EnforceMs = percentiles(prop), percentiles(enf)
}
