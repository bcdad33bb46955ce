package testnet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/node"
)

// ScenarioOptions configure the brute-force scenario.
type ScenarioOptions struct {
	Options
	// Attacked is how many nodes the attacker hits (default 2).
	Attacked int
	// Attacker is the source address (default 203.0.113.66, TEST-NET-3).
	Attacker netip.Addr
	// Failures per attacked node (default 12).
	Failures int
	// Timeout bounds the whole scenario (default DefaultTimeout).
	Timeout time.Duration
	// Processes spreads the mesh over that many OS processes (procs.go);
	// 0 or 1 runs every node in this process.
	Processes int
	// WorkerCommand returns the command of one worker process (one that
	// calls ServeWorker on its standard input and output); nil runs this
	// executable with WorkerArgs.
	WorkerCommand func() *exec.Cmd
	// WorkerStderr, if set, receives the workers' standard error (their
	// logs); the last lines are kept in any case to explain a failure.
	WorkerStderr io.Writer
}

// DefaultTimeout bounds a brute-force run of a mesh of nodes, formation
// included: two minutes, and a second more for each node above
// SimProfileAbove (a simulated mesh of a thousand forms in minutes on
// two cores).
func DefaultTimeout(nodes int) time.Duration {
	return 2*time.Minute + time.Duration(max(0, nodes-SimProfileAbove))*time.Second
}

// DefaultScenarioTimeout bounds a scenario file's run when it sets no
// timeout: a minute more than DefaultTimeout (three minutes, formation
// included, and a second more for each node above SimProfileAbove), so
// that a file scaled up to hundreds of nodes does not run out while the
// mesh forms.
func DefaultScenarioTimeout(nodes int) time.Duration {
	return time.Minute + DefaultTimeout(nodes)
}

// Percentiles summarise a latency distribution in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// NodeReport is one node's view of the scenario.
type NodeReport struct {
	Site          string  `json:"site"`
	ID            string  `json:"id"`
	Attacked      bool    `json:"attacked"`
	Detected      bool    `json:"detected"`
	PropagationMs float64 `json:"propagation_ms"`  // first detection anywhere → this node holds a sighting
	CommitMs      float64 `json:"commit_ms"`       // first detection → mesh-wide block seen committed here
	EnforceMs     float64 `json:"enforce_ms"`      // first detection → block enforced here
	LineEnforceMs float64 `json:"line_enforce_ms"` // attack's log lines written → block enforced here
	// CommitToEnforceMs is the time from the block's first commit
	// anywhere to its enforcement here (-1: not enforced).
	CommitToEnforceMs float64 `json:"commit_to_enforce_ms"`
	Enforcing         bool    `json:"enforcing"`
	// Kind is the node's kind when the timelines were read: server,
	// standby or edge.
	Kind string `json:"kind,omitempty"`
}

// Report is the result of a scenario run.
type Report struct {
	Nodes           int         `json:"nodes"`
	Attacked        int         `json:"attacked"`
	Indicator       string      `json:"indicator"`
	PolicyCommitted bool        `json:"policy_committed"`
	PolicyID        string      `json:"policy_id,omitempty"`
	EnforcedOn      int         `json:"enforced_on"`
	PropagationMs   Percentiles `json:"propagation_ms"`
	CommitMs        Percentiles `json:"commit_ms"`
	EnforceMs       Percentiles `json:"enforce_ms"`
	// CommitToEnforceMs is, on each node, the time from the block's
	// first commit anywhere (the leader's) to the block enforced there.
	CommitToEnforceMs Percentiles `json:"commit_to_enforce_ms"`
	// CommitToEnforceByKind is CommitToEnforceMs over each kind of node
	// (server, standby, edge) alone.
	CommitToEnforceByKind map[string]Percentiles `json:"commit_to_enforce_by_kind_ms,omitempty"`
	// Certified sums what the servers published on the certified topic
	// over the whole run (formation included): with aggregation, about
	// one message per batch of entries.
	Certified CertifiedCounts `json:"certified"`
	// RPCDropped sums the GossipSub RPCs the nodes dropped on their way
	// to a peer whose outbound queue was full, over the whole run
	// (formation included): the messages in them reached the peer by
	// gossip, later, if at all.
	RPCDropped uint64 `json:"rpc_dropped"`
	// LineDetectMs is the time from the attack's log lines being written
	// to the first detection anywhere (the file sources' wakeup and the
	// rules); LineEnforceMs, from then to the block enforced on each node.
	LineDetectMs  float64     `json:"line_detect_ms"`
	LineEnforceMs Percentiles `json:"line_enforce_ms"`
	StartupMs     float64     `json:"startup_ms"`
	// GCHeld: the garbage collector of every process was held off from
	// the attack's first line until every node enforced (gchold.go).
	GCHeld bool `json:"gc_held"`
	// SettleMs is how long the run waited, once the mesh had formed, for
	// the machine to settle before the attack (settle.go).
	SettleMs float64 `json:"settle_ms"`
	// AttackCPUMs is the CPU time the mesh's processes spent from the
	// attack's log lines written to every node enforcing the block (or
	// the run's end), in 10 ms steps; -1 where it cannot be read (no
	// /proc, or a process gone). It is what the attack cost the mesh,
	// with the mesh's work at rest meanwhile: a steadier figure than the
	// latencies it drives (two runs at 1,000 nodes with the same
	// GossipSub settings: 3.44 and 3.71 CPU-s, propagation p99 1.32 and
	// 1.50 s; one earlier build's p99 ranged from 1.37 to 2.5 s over
	// runs).
	AttackCPUMs float64 `json:"attack_cpu_ms"`
	// Memory is the peak resident set of the processes that ran the
	// mesh, summed, and each process's own.
	Memory         *ProcessStats `json:"memory,omitempty"`
	PerNode        []NodeReport  `json:"per_node"`
	Error          string        `json:"error,omitempty"`
	firstDetection time.Time
	linesWritten   time.Time
}

// OK reports whether every node enforces the mesh-wide block.
func (r *Report) OK() bool { return r.PolicyCommitted && r.EnforcedOn == r.Nodes }

// RunBruteForce starts a mesh, replays an SSH brute force into the first
// Attacked nodes' logs, and waits until every node enforces a mesh-wide
// block of the attacker (or the timeout passes). The report is returned in
// both cases; err is non-nil when the mesh did not converge.
func RunBruteForce(ctx context.Context, o ScenarioOptions) (*Report, error) {
	if o.Attacked == 0 {
		o.Attacked = 2
	}
	if !o.Attacker.IsValid() {
		o.Attacker = netip.MustParseAddr("203.0.113.66")
	}
	if o.Failures == 0 {
		o.Failures = 12
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout(o.Nodes)
	}
	if o.Processes > 1 {
		return runBruteForceProcs(ctx, o)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	t0 := time.Now()
	m, err := Start(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if o.Attacked > len(m.Nodes) {
		return nil, fmt.Errorf("testnet: %d attacked nodes but only %d nodes", o.Attacked, len(m.Nodes))
	}
	ind := intel.IndicatorFromAddr(o.Attacker)
	rep := &Report{Nodes: len(m.Nodes), Attacked: o.Attacked, Indicator: ind.Value,
		PolicyID: intel.PolicyID(intel.ActionBlock, ind), StartupMs: ms(time.Since(t0))}
	rep.SettleMs = ms(settleMesh(ctx, len(m.Nodes)))
	holdGC() // gchold.go
	defer releaseGC()
	rep.GCHeld = true

	rep.linesWritten = time.Now()
	cpu := startCPU([]int{os.Getpid()})
	for i := range o.Attacked {
		if err := m.InjectSSHBruteForce(i, o.Attacker, o.Failures); err != nil {
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
	rep.AttackCPUMs = cpu.ms()
	releaseGC()
	rep.fill(meshTimelines(m, ind), o.Attacked)
	rep.PolicyCommitted = policyCommitted(m.Nodes[0], rep.PolicyID)
	ps := ReadProcessStats(len(m.Nodes))
	rep.Memory = &ps
	if werr != nil {
		rep.Error = werr.Error()
		return rep, fmt.Errorf("testnet: mesh did not converge: %w", werr)
	}
	return rep, nil
}

// NodeTimeline is one node's way of an indicator: its index in the mesh,
// its site and ID, its timeline and whether it enforces a block now.
type NodeTimeline struct {
	Index     int           `json:"index"`
	Site      string        `json:"site"`
	ID        string        `json:"id"`
	Timeline  node.Timeline `json:"timeline"`
	Enforcing bool          `json:"enforcing"`
	Kind      string        `json:"kind,omitempty"`
	// Certified is what this node published on the certified topic (a
	// server's: messages, entries in them, own certificates published
	// for want of the leader's).
	Certified CertifiedCounts `json:"certified"`
	// RPCDropped is the GossipSub RPCs this node dropped, a peer's
	// outbound queue full (gossip.Gossip.DroppedRPCs).
	RPCDropped uint64 `json:"rpc_dropped"`
}

// CertifiedCounts are the certified topic's messages and entries one node
// (or the mesh) published, and the fallbacks among them.
type CertifiedCounts struct {
	Messages  uint64 `json:"messages"`
	Entries   uint64 `json:"entries"`
	Fallbacks uint64 `json:"fallbacks"`
}

func (c *CertifiedCounts) add(o CertifiedCounts) {
	c.Messages += o.Messages
	c.Entries += o.Entries
	c.Fallbacks += o.Fallbacks
}

// certifiedCounts reads what n published on the certified topic.
func certifiedCounts(n *node.Node) CertifiedCounts {
	a := n.Consensus().Aggregation()
	return CertifiedCounts{Messages: a.Messages, Entries: a.Entries, Fallbacks: a.Fallbacks}
}

// meshTimelines returns the timelines of ind on m's nodes, in order.
func meshTimelines(m *Mesh, ind intel.Indicator) []NodeTimeline {
	nts := make([]NodeTimeline, len(m.Nodes))
	for i, n := range m.Nodes {
		tl, _ := n.Timeline(ind)
		nts[i] = NodeTimeline{Index: i, Site: n.Site(), ID: n.ID(), Timeline: tl, Enforcing: n.Enforcing(ind), Kind: string(n.Consensus().Kind()),
			Certified: certifiedCounts(n), RPCDropped: n.Gossip().DroppedRPCs()}
	}
	return nts
}

// policyCommitted reports whether n holds the policy id as active.
func policyCommitted(n *node.Node, id string) bool {
	_, ok := n.Consensus().Policy(id, time.Now())
	return ok
}

// fill computes the per-node report and the percentiles from nts, every
// node's timeline in the order of their indexes; the nodes below
// attacked were attacked.
func (r *Report) fill(nts []NodeTimeline, attacked int) {
	for _, nt := range nts {
		if d := nt.Timeline.Detected; !d.IsZero() && (r.firstDetection.IsZero() || d.Before(r.firstDetection)) {
			r.firstDetection = d
		}
	}
	var firstCommit time.Time
	for _, nt := range nts {
		if c := nt.Timeline.Committed; !c.IsZero() && (firstCommit.IsZero() || c.Before(firstCommit)) {
			firstCommit = c
		}
		r.Certified.add(nt.Certified)
		r.RPCDropped += nt.RPCDropped
	}
	var prop, commit, enf, lineEnf, commitEnf []float64
	byKind := map[string][]float64{}
	r.LineDetectMs = -1
	if !r.firstDetection.IsZero() && !r.linesWritten.IsZero() {
		r.LineDetectMs = ms(r.firstDetection.Sub(r.linesWritten))
	}
	for _, nt := range nts {
		tl := nt.Timeline
		nr := NodeReport{Site: nt.Site, ID: nt.ID, Attacked: nt.Index < attacked, Detected: !tl.Detected.IsZero(),
			PropagationMs: -1, CommitMs: -1, EnforceMs: -1, LineEnforceMs: -1, CommitToEnforceMs: -1, Enforcing: nt.Enforcing, Kind: nt.Kind}
		if !r.firstDetection.IsZero() {
			if !tl.Received.IsZero() {
				nr.PropagationMs = ms(tl.Received.Sub(r.firstDetection))
				prop = append(prop, nr.PropagationMs)
			}
			if !tl.Committed.IsZero() {
				nr.CommitMs = ms(tl.Committed.Sub(r.firstDetection))
				commit = append(commit, nr.CommitMs)
			}
			if e := tl.MeshEnforced(); !e.IsZero() && nr.Enforcing {
				nr.EnforceMs = ms(e.Sub(r.firstDetection))
				enf = append(enf, nr.EnforceMs)
				if !firstCommit.IsZero() {
					nr.CommitToEnforceMs = ms(e.Sub(firstCommit))
					commitEnf = append(commitEnf, nr.CommitToEnforceMs)
					if nt.Kind != "" {
						byKind[nt.Kind] = append(byKind[nt.Kind], nr.CommitToEnforceMs)
					}
				}
				if !r.linesWritten.IsZero() {
					nr.LineEnforceMs = ms(e.Sub(r.linesWritten))
					lineEnf = append(lineEnf, nr.LineEnforceMs)
				}
				r.EnforcedOn++
			}
		}
		r.PerNode = append(r.PerNode, nr)
	}
	r.PropagationMs, r.CommitMs, r.EnforceMs = percentiles(prop), percentiles(commit), percentiles(enf)
	r.LineEnforceMs = percentiles(lineEnf)
	r.CommitToEnforceMs = percentiles(commitEnf)
	for k, v := range byKind {
		if r.CommitToEnforceByKind == nil {
			r.CommitToEnforceByKind = map[string]Percentiles{}
		}
		r.CommitToEnforceByKind[k] = percentiles(v)
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// percentiles uses the nearest-rank method.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{P50: -1, P99: -1, Max: -1}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return Percentiles{P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// WriteJSON writes the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as a human-readable timeline.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Meshward testnet: %d nodes on loopback, SSH brute force from %s replayed into %d of them\n\n", r.Nodes, r.Indicator, r.Attacked)
	fmt.Fprintf(w, "mesh formed in %.0f ms (Raft roster and GossipSub topic complete)\n", r.StartupMs)
	if r.GCHeld {
		fmt.Fprintf(w, "garbage collection held off from the attack's first line until every node enforced\n")
	}
	if r.SettleMs > 0 {
		fmt.Fprintf(w, "waited %.0f ms for the machine to settle before the attack\n", r.SettleMs)
	}
	if r.AttackCPUMs >= 0 {
		fmt.Fprintf(w, "the attack cost the mesh's processes %.0f ms of CPU until every node enforced\n", r.AttackCPUMs)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "peak memory %.0f MB (%.1f MB a node)", m.PeakRSSMB, m.PeakRSSPerNodeMB)
		if len(m.Processes) > 1 {
			fmt.Fprintf(w, " over %d processes:", len(m.Processes))
			for _, p := range m.Processes {
				fmt.Fprintf(w, " %.0f MB (pid %d, %d nodes)", p.PeakRSSMB, p.PID, p.Nodes)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tATTACKED\tDETECTED\tSIGHTING HELD\tBLOCK COMMITTED\tENFORCED\t")
	for _, n := range r.PerNode {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", n.Site, yesNo(n.Attacked), yesNo(n.Detected),
			at(n.PropagationMs), at(n.CommitMs), at(n.EnforceMs))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n(times are milliseconds after the first detection anywhere in the mesh)\n\n")
	fmt.Fprintf(w, "propagation  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", r.PropagationMs.P50, r.PropagationMs.P99, r.PropagationMs.Max)
	fmt.Fprintf(w, "commit       p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", r.CommitMs.P50, r.CommitMs.P99, r.CommitMs.Max)
	fmt.Fprintf(w, "enforcement  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", r.EnforceMs.P50, r.EnforceMs.P99, r.EnforceMs.Max)
	fmt.Fprintf(w, "first commit → enforced  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", r.CommitToEnforceMs.P50, r.CommitToEnforceMs.P99, r.CommitToEnforceMs.Max)
	if c := r.Certified; c.Messages > 0 {
		fmt.Fprintf(w, "certified topic: %d messages carrying %d entries (%d fallbacks)\n", c.Messages, c.Entries, c.Fallbacks)
	}
	for _, k := range slices.Sorted(maps.Keys(r.CommitToEnforceByKind)) {
		p := r.CommitToEnforceByKind[k]
		fmt.Fprintf(w, "  on the %-9s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", k+"s", p.P50, p.P99, p.Max)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "from the attack's log lines written: detected after %.1f ms; enforced p50 %.1f ms  p99 %.1f ms  max %.1f ms\n\n",
		r.LineDetectMs, r.LineEnforceMs.P50, r.LineEnforceMs.P99, r.LineEnforceMs.Max)
	if r.OK() {
		fmt.Fprintf(w, "OK: policy %s (block %s) committed through Raft and enforced on %d/%d nodes\n", r.PolicyID, r.Indicator, r.EnforcedOn, r.Nodes)
	} else {
		fmt.Fprintf(w, "FAILED: policy committed=%v, enforced on %d/%d nodes: %s\n", r.PolicyCommitted, r.EnforcedOn, r.Nodes, r.Error)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func at(v float64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("+%.1f ms", v)
}
