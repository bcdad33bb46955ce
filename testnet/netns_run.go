//go:build linux

package testnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/process"
	"github.com/meshward/meshward/responders/nft"
)

// metricsPort is where each agent serves /metrics, on its namespace's
// loopback: reachable from its namespace only.
const metricsPort = 9464

// RunScenarioNetns runs a scenario on a namespace-mode mesh
// (StartNetns): every node a `meshward agent` process in its own network
// namespace, enforcing in that namespace's nftables; topology.links set
// latency and loss (netem, or the lab's NFQUEUE delay), partitions are
// cut in the hub's bridge, a kill is a SIGKILL and a restart starts the
// process again on its data directory. Attacks are appended to each agent's auth.log; expectations
// are read through each agent's admin API, and `enforced` also from the
// namespace's kernel set. Steps that need an in-process node (skew,
// rogue, stranger) and a profile other than the default are refused
// before anything starts (ErrNetnsStep). The report is returned in every
// case where the mesh started; err is nil only when the run passed.
func RunScenarioNetns(ctx context.Context, s *Scenario, o NetnsRunOptions) (*ScenarioReport, error) {
	if err := NetnsSupports(s, o.Profile); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.file, err)
	}
	r := &runner{s: s, o: o.RunOptions, size: s.Topology.Nodes}
	if o.Size > 0 {
		r.size = o.Size
	}
	if err := r.resolveGroups(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.file, err)
	}
	var links []LabLink
	for _, l := range s.Topology.Links {
		links = append(links, LabLink{A: r.groups[l.Between[0]], B: r.groups[l.Between[1]], Latency: l.Latency.Duration, Loss: l.Loss})
	}
	timeout := s.Timeout.Duration
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := s.Topology
	start := time.Now()
	m, err := StartNetns(ctx, NetnsOptions{Nodes: r.size, Binary: o.Binary, Dir: o.Dir, MinNodes: t.MinNodes,
		LocalBlock: t.LocalBlock, Links: links, LinkMode: o.LinkMode, Configure: func(_ int, cfg map[string]any) {
			cfg["metrics_listen"] = fmt.Sprintf("127.0.0.1:%d", metricsPort)
			corr := cfg["corroboration"].(map[string]any)
			if t.Summaries != nil {
				d := map[string]any{"summaries": true}
				if t.Summaries.Interval.Duration > 0 {
					d["interval"] = t.Summaries.Interval.Duration.String()
				}
				corr["distributed"] = d
			}
			g := map[string]any{}
			if t.RateLimit > 0 {
				g["rate_limit"] = t.RateLimit
			}
			if t.RateBurst > 0 {
				g["rate_burst"] = t.RateBurst
			}
			if len(g) > 0 {
				cfg["gossip"] = g
			}
		}})
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.file, err)
	}
	defer m.Close()
	if o.Started != nil {
		o.Started(m)
	}
	nr := &netnsRunner{runner: r, m: m, attacked: map[int]bool{}}
	profile := "netns"
	if mode := m.Lab.LinkMode(); mode != "" {
		profile += ", links by " + mode
	}
	r.rep = &ScenarioReport{Scenario: s.Name, File: s.file, Nodes: r.size, Profile: profile,
		StartupMs: ms(time.Since(start)), Steps: []StepResult{}, Expectations: []ExpectResult{}}
	r.t0 = time.Now()
	if s.Measure != nil {
		r.primary = s.Measure.Indicator
	}
	var stepErr error
	for i := range s.Timeline {
		if stepErr = nr.step(ctx, i); stepErr != nil {
			break
		}
	}
	if stepErr == nil {
		nr.checkNeverAtEnd(ctx)
	}
	r.rep.DurationMs = ms(time.Since(r.t0))
	nr.fill(ctx)
	if mem := m.Memory(); mem.Nodes > 0 {
		r.rep.Memory = &mem
	}
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

// netnsRunner runs a timeline on a NetnsMesh; the runner holds the
// scenario, the groups and the report.
type netnsRunner struct {
	*runner
	m *NetnsMesh
	// attacked are the nodes the primary indicator's attacks hit.
	attacked map[int]bool
}

func (r *netnsRunner) nodes(ctx context.Context, sel NodeSel) ([]int, error) {
	for _, i := range sel.Indices {
		if i >= r.size {
			return nil, fmt.Errorf("line %d: node %d, but the mesh has %d nodes", sel.line, i, r.size)
		}
	}
	switch sel.Name {
	case "":
		return sel.Indices, nil
	case SelAll:
		return r.m.runningNodes(), nil
	case SelLeader:
		var leader int
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := Poll(wctx, 50*time.Millisecond, func() (bool, string) {
			leader = r.leader(wctx)
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

// leader is the running node that says it leads, or -1.
func (r *netnsRunner) leader(ctx context.Context) int {
	for _, i := range r.m.runningNodes() {
		st, err := r.m.Client(i).Status(ctx)
		if err == nil && st.Mesh.IsLeader {
			return i
		}
	}
	return -1
}

func (r *netnsRunner) step(ctx context.Context, i int) error {
	return playStep(ctx, r.s, i, r.t0, r.rep, r.o.Narrate, r.do)
}

func (r *netnsRunner) do(ctx context.Context, i, line int, st *Step) (string, error) {
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
		return fmt.Sprintf("SIGKILL to %v", nodes), nil
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
		if err := r.m.Lab.Partition(groups...); err != nil {
			return "", err
		}
		return fmt.Sprintf("partitioned %v in the hub's bridge", groups), nil
	case st.Heal:
		if err := r.m.Lab.Heal(); err != nil {
			return "", err
		}
		return "healed", nil
	case st.Operator != nil:
		return r.operator(ctx, st.Operator)
	case st.Expect != nil:
		return r.expect(ctx, i, line, st)
	}
	return "", fmt.Errorf("%s: %w", st.action(), ErrNetnsStep)
}

func (r *netnsRunner) attack(ctx context.Context, a *AttackStep) (string, error) {
	nodes, err := r.nodes(ctx, a.Nodes)
	if err != nil {
		return "", err
	}
	now := time.Now()
	for _, n := range nodes {
		if !r.m.Running(n) {
			return "", fmt.Errorf("node %d is not running", n)
		}
		site := r.m.Site(n)
		var lines []byte
		switch a.Kind {
		case AttackBruteForce:
			lines = SSHBruteForceLog(site, a.From.Addr, cmpOr(a.Failures, 12), now)
		case AttackLowAndSlow:
			lines = FailedLoginLines(site, a.From.Addr, cmpOr(a.Failures, 2), now)
		case AttackPortScan:
			lines = PortScanLog(site, a.From.Addr, cmpOr(a.Ports, 20), now)
		}
		if err := appendFile(r.m.AuthLog(n), lines); err != nil {
			return "", err
		}
	}
	ind := intel.IndicatorFromAddr(a.From.Addr)
	if r.primary.Value == "" || r.primary == ind && r.written.IsZero() {
		r.primary, r.written = ind, now
	}
	if r.primary == ind {
		for _, n := range nodes {
			r.attacked[n] = true
		}
	}
	return fmt.Sprintf("%s from %s at nodes %v", a.Kind, a.From.Addr, nodes), nil
}

// fill measures the primary indicator on the running nodes from their
// process records (admin API: process export) and their kernel sets.
func (r *netnsRunner) fill(ctx context.Context) {
	if r.primary.Value == "" {
		return
	}
	r.rep.Indicator = r.primary.Value
	key := r.primary.Key()
	run := r.m.runningNodes()
	recs := make(map[int]process.Record)
	var first, firstCommit time.Time
	for _, i := range run {
		ex, err := r.m.Client(i).ProcessExport(ctx)
		if err != nil {
			continue
		}
		for _, rec := range ex.Records {
			if rec.Indicator != key {
				continue
			}
			recs[i] = rec
			if d := rec.Detected; !d.IsZero() && (first.IsZero() || d.Before(first)) {
				first = d
			}
			if c := rec.Committed; !c.IsZero() && (firstCommit.IsZero() || c.Before(firstCommit)) {
				firstCommit = c
			}
		}
	}
	if first.IsZero() {
		first = r.written
	}
	if first.IsZero() {
		return
	}
	var prop, enf []float64
	for _, i := range run {
		rec := recs[i]
		held, _ := r.m.Lab.Holds(i, nft.DefaultTable, r.primary)
		nr := NodeReport{Site: r.m.Site(i), ID: r.m.ID(i), Attacked: r.attacked[i], Detected: len(rec.Detections) > 0,
			PropagationMs: -1, CommitMs: -1, EnforceMs: -1, LineEnforceMs: -1, CommitToEnforceMs: -1, Enforcing: held}
		if !rec.Received.IsZero() {
			nr.PropagationMs = ms(rec.Received.Sub(first))
			prop = append(prop, nr.PropagationMs)
		}
		if !rec.Committed.IsZero() {
			nr.CommitMs = ms(rec.Committed.Sub(first))
		}
		if e := rec.Enforced; !e.IsZero() && held {
			nr.EnforceMs = ms(e.Sub(first))
			nr.LineEnforceMs = ms(e.Sub(r.written))
			if !firstCommit.IsZero() {
				enf = append(enf, ms(e.Sub(firstCommit)))
			}
		}
		r.rep.PerNode = append(r.rep.PerNode, nr)
	}
	r.rep.PropagationMs, r.rep.EnforceMs = percentiles(prop), percentiles(enf)
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testnet: open %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("testnet: write %s: %w", path, err)
	}
	return f.Close()
}

func (r *netnsRunner) operator(ctx context.Context, o *OperatorStep) (string, error) {
	run := r.m.runningNodes()
	if len(run) == 0 {
		return "", errors.New("no node is running")
	}
	via := run[0]
	if d := o.Distributed; d != nil {
		cmd := intel.OperatorCommand{Op: intel.OpSetDistributed, DistributedMinSites: d.MinSites, DistributedThreshold: d.Threshold, DistributedSiteCap: d.SiteCap}
		if err := r.m.Submit(ctx, via, cmd); err != nil {
			return "", err
		}
		return fmt.Sprintf("distributed rule set through node %d's admin API: %d sites, threshold %d, cap %d", via, d.MinSites, d.Threshold, d.SiteCap), nil
	}
	ind := o.Block.Indicator
	cmd := intel.OperatorCommand{Op: intel.OpBlock, Indicator: &ind, TTLSeconds: int64(time.Hour / time.Second), Reason: "scenario " + r.s.Name}
	if err := r.m.Submit(ctx, via, cmd); err != nil {
		return "", err
	}
	return fmt.Sprintf("operator block of %s through node %d's admin API", ind.Value, via), nil
}

// expect polls the step's conditions until all hold or Within passes.
func (r *netnsRunner) expect(ctx context.Context, step, line int, st *Step) (string, error) {
	e := st.Expect
	within := e.Within.Duration
	if within == 0 {
		within = 30 * time.Second
	}
	type cond struct {
		name    string
		check   func(context.Context) (bool, string)
		settled bool
	}
	var conds []cond
	label := func(s string) string {
		if st.Name != "" {
			return st.Name + ": " + s
		}
		return s
	}
	if e.Committed != nil {
		ind := e.Committed.Indicator
		conds = append(conds, cond{name: label("committed " + ind.Value), check: func(ctx context.Context) (bool, string) { return r.committed(ctx, ind) }})
	}
	if c := e.Enforced; c != nil {
		nodes, err := r.nodes(ctx, c.On)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("enforced %s on %s (admin API and kernel set)", c.Indicator.Value, c.On)), check: func(ctx context.Context) (bool, string) {
			return r.enforced(ctx, c.Indicator.Indicator, nodes)
		}})
	}
	if c := e.NotEnforced; c != nil {
		nodes, err := r.nodes(ctx, c.On)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("not enforced %s on %s (kernel set)", c.Indicator.Value, c.On)), settled: true, check: func(ctx context.Context) (bool, string) {
			for _, i := range nodes {
				if !r.m.Running(i) {
					return false, fmt.Sprintf("node %d is not running", i)
				}
				held, err := r.m.Lab.Holds(i, nft.DefaultTable, c.Indicator.Indicator)
				if err != nil {
					return false, fmt.Sprintf("node %d: %v", i, err)
				}
				if held {
					return false, fmt.Sprintf("node %d's kernel set holds %s", i, c.Indicator.Value)
				}
			}
			return true, ""
		}})
	}
	for _, ref := range e.NeverBlocked {
		ind := ref.Indicator
		r.never = append(r.never, neverCheck{step: step, line: ref.line, ind: ind})
		conds = append(conds, cond{name: label("never blocked " + ind.Value), settled: true, check: func(ctx context.Context) (bool, string) { return r.notBlocked(ctx, ind) }})
	}
	if c := e.Refused; c != nil {
		sel := c.On
		if sel.empty() {
			sel = NodeSel{Name: SelAll}
		}
		nodes, err := r.nodes(ctx, sel)
		if err != nil {
			return "", err
		}
		name := c.Metric
		if c.Reason != "" {
			name += "{reason=" + c.Reason + "}"
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("refused %s ≥ %d", name, c.Min)), check: func(ctx context.Context) (bool, string) {
			got, err := r.counter(ctx, nodes, c.Metric, c.Reason)
			if err != nil {
				return false, err.Error()
			}
			return got >= uint64(c.Min), fmt.Sprintf("%s is %d on nodes %v, want at least %d", name, got, nodes, c.Min)
		}})
	}
	if e.Running != nil {
		nodes, err := r.nodes(ctx, *e.Running)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("running and caught up: %s", e.Running)), check: func(ctx context.Context) (bool, string) {
			return r.m.caughtUp(ctx, nodes)
		}})
	}
	if e.Voters > 0 {
		conds = append(conds, cond{name: label(fmt.Sprintf("%d voters", e.Voters)), check: func(ctx context.Context) (bool, string) {
			want := min(e.Voters, len(r.m.runningNodes()))
			got := r.voters(ctx)
			return got >= want, fmt.Sprintf("%d voters in the Raft configuration, want %d", got, want)
		}})
	}

	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	pending := make([]bool, len(conds))
	for i := range pending {
		pending[i] = true
	}
	why := make([]string, len(conds))
	took := make([]float64, len(conds))
	_ = Poll(wctx, 50*time.Millisecond, func() (bool, string) {
		quiet, qwhy := r.quiet(wctx)
		all := true
		for i, c := range conds {
			if !pending[i] {
				continue
			}
			w := "the mesh did not settle: " + qwhy
			if !c.settled || quiet {
				ok, cw := c.check(wctx)
				if ok {
					pending[i], took[i] = false, ms(time.Since(start))
					continue
				}
				w = cw
			}
			all = false
			if wctx.Err() == nil || why[i] == "" {
				why[i] = w // not the deadline cutting the last look short
			}
		}
		return all, ""
	})
	passed := 0
	for i, c := range conds {
		res := ExpectResult{Step: step, Line: line, Name: c.name, Passed: !pending[i], TookMs: took[i]}
		if pending[i] {
			res.Reason = fmt.Sprintf("not within %s: %s", within, why[i])
		} else {
			passed++
		}
		r.rep.Expectations = append(r.rep.Expectations, res)
	}
	return fmt.Sprintf("%d of %d conditions met", passed, len(conds)), ctx.Err()
}

// quiet: every running node evaluated every sighting it stored (its
// status counters).
func (r *netnsRunner) quiet(ctx context.Context) (bool, string) {
	for _, i := range r.m.runningNodes() {
		st, err := r.m.Client(i).Status(ctx)
		if err != nil {
			return false, fmt.Sprintf("node %d: status: %v", i, err)
		}
		c := st.Node.Counters
		if c["evaluations"]+c["evaluations_dropped"] < c["sightings_stored"] {
			return false, fmt.Sprintf("node %d evaluated %d of %d sightings", i, c["evaluations"]+c["evaluations_dropped"], c["sightings_stored"])
		}
	}
	return true, ""
}

// meshBlock reports whether node i's admin API shows the committed
// mesh-wide block of ind.
func (r *netnsRunner) meshBlock(ctx context.Context, i int, ind intel.Indicator) (bool, error) {
	_, err := r.m.Client(i).Policy(ctx, intel.PolicyID(intel.ActionBlock, ind), admin.ScopeMesh)
	if notFound(err) {
		return false, nil
	}
	return err == nil, err
}

func (r *netnsRunner) committed(ctx context.Context, ind intel.Indicator) (bool, string) {
	for _, i := range r.m.runningNodes() {
		if ok, _ := r.meshBlock(ctx, i, ind); ok {
			return true, ""
		}
	}
	return false, fmt.Sprintf("no running node's admin API shows a committed block of %s", ind.Value)
}

// enforced: each of nodes runs, its admin API shows the committed block
// of ind, and its namespace's kernel set holds ind.
func (r *netnsRunner) enforced(ctx context.Context, ind intel.Indicator, nodes []int) (bool, string) {
	if len(nodes) == 0 {
		return false, "no node selected"
	}
	for _, i := range nodes {
		if !r.m.Running(i) {
			return false, fmt.Sprintf("node %d is not running", i)
		}
		ok, err := r.meshBlock(ctx, i, ind)
		if err != nil {
			return false, fmt.Sprintf("node %d: %v", i, err)
		}
		if !ok {
			return false, fmt.Sprintf("node %d does not hold a committed block of %s", i, ind.Value)
		}
		held, err := r.m.Lab.Holds(i, nft.DefaultTable, ind)
		if err != nil {
			return false, fmt.Sprintf("node %d: %v", i, err)
		}
		if !held {
			return false, fmt.Sprintf("node %d holds the block of %s but its namespace's nftables set does not", i, ind.Value)
		}
	}
	return true, ""
}

// notBlocked: no running node holds a mesh-wide block of ind, and no
// running node's kernel set holds it.
func (r *netnsRunner) notBlocked(ctx context.Context, ind intel.Indicator) (bool, string) {
	for _, i := range r.m.runningNodes() {
		ok, err := r.meshBlock(ctx, i, ind)
		if err != nil {
			return false, fmt.Sprintf("node %d: %v", i, err)
		}
		if ok {
			return false, fmt.Sprintf("node %d holds a mesh-wide block of %s", i, ind.Value)
		}
		held, err := r.m.Lab.Holds(i, nft.DefaultTable, ind)
		if err != nil {
			return false, fmt.Sprintf("node %d: %v", i, err)
		}
		if held {
			return false, fmt.Sprintf("node %d's kernel set holds %s", i, ind.Value)
		}
	}
	return true, ""
}

func (r *netnsRunner) checkNeverAtEnd(ctx context.Context) {
	if len(r.never) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	qerr := Poll(wctx, 50*time.Millisecond, func() (bool, string) { return r.quiet(wctx) })
	for _, c := range r.never {
		res := ExpectResult{Step: c.step, Line: c.line, Name: "at the end: never blocked " + c.ind.Value, Passed: true}
		if qerr != nil {
			res.Passed, res.Reason = false, "the mesh did not settle: "+qerr.Error()
		} else if ok, why := r.notBlocked(wctx, c.ind); !ok {
			res.Passed, res.Reason = false, why
		}
		r.rep.Expectations = append(r.rep.Expectations, res)
	}
}

// voters counts the voters the leader reports.
func (r *netnsRunner) voters(ctx context.Context) int {
	for _, i := range r.m.runningNodes() {
		st, err := r.m.Client(i).Status(ctx)
		if err == nil && st.Mesh.IsLeader {
			return len(st.Mesh.Voters)
		}
	}
	return 0
}

// counter sums a counter over nodes, read from each agent's /metrics on
// its namespace's loopback (the series whose reason label is reason,
// every series when it is empty).
func (r *netnsRunner) counter(ctx context.Context, nodes []int, name, reason string) (uint64, error) {
	var sum float64
	for _, i := range nodes {
		if !r.m.Running(i) {
			continue
		}
		v, err := r.m.scrape(ctx, i, name, reason)
		if err != nil {
			return 0, fmt.Errorf("node %d: %w", i, err)
		}
		sum += v
	}
	return uint64(sum), nil
}

// scrape reads node i's /metrics from inside its namespace and sums the
// series of name (with reason, when set).
func (m *NetnsMesh) scrape(ctx context.Context, i int, name, reason string) (float64, error) {
	ns := m.Lab.Namespace(i)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := m.Lab.inNS(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	return sumSeries(io.LimitReader(resp.Body, 64<<20), name, reason)
}

// sumSeries sums, in Prometheus text exposition, the samples of metric
// name whose reason label is reason (all of them when reason is empty).
func sumSeries(rd io.Reader, name, reason string) (float64, error) {
	var sum float64
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		if reason != "" && !hasLabel(labels, "reason", reason) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func hasLabel(labels, key, value string) bool {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.TrimSpace(k) == key && strings.EqualFold(strings.Trim(v, `"`), value) {
			return true
		}
	}
	return false
}
