package testnet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/meshward/meshward/consensus"
	"github.com/meshward/meshward/intel"
)

// expect runs an expect step: its conditions, polled together until all
// hold or its deadline passes; a verdict per condition.
func (r *runner) expect(ctx context.Context, step, line int, st *Step) (string, error) {
	e := st.Expect
	within := e.Within.Duration
	if within == 0 {
		within = 30 * time.Second
	}
	type cond struct {
		name  string
		check func() (bool, string)
		// settled conditions are judged once the mesh is quiet.
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
		conds = append(conds, cond{name: label("committed " + ind.Value), check: func() (bool, string) { return r.committed(ind) }})
	}
	if c := e.Enforced; c != nil {
		nodes, err := r.nodes(ctx, c.On)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("enforced %s on %s", c.Indicator.Value, c.On)), check: func() (bool, string) {
			return r.enforced(c.Indicator.Indicator, nodes)
		}})
	}
	if c := e.NotEnforced; c != nil {
		nodes, err := r.nodes(ctx, c.On)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("not enforced %s on %s", c.Indicator.Value, c.On)), settled: true, check: func() (bool, string) {
			for _, i := range nodes {
				if !r.m.Running(i) {
					return false, fmt.Sprintf("node %d is not running", i)
				}
				if r.m.Nodes[i].Enforcing(c.Indicator.Indicator) {
					return false, fmt.Sprintf("node %d enforces a block of %s", i, c.Indicator.Value)
				}
			}
			return true, ""
		}})
	}
	for _, ref := range e.NeverBlocked {
		ind := ref.Indicator
		r.never = append(r.never, neverCheck{step: step, line: ref.line, ind: ind})
		conds = append(conds, cond{name: label("never blocked " + ind.Value), settled: true, check: func() (bool, string) { return r.notBlocked(ind) }})
	}
	if c := e.Refused; c != nil {
		var nodes []int
		var err error
		if !c.On.empty() {
			if nodes, err = r.nodes(ctx, c.On); err != nil {
				return "", err
			}
		} else if nodes, err = r.nodes(ctx, NodeSel{Name: SelAll}); err != nil {
			return "", err
		}
		name := c.Metric
		if c.Reason != "" {
			name += "{reason=" + c.Reason + "}"
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("refused %s ≥ %d", name, c.Min)), check: func() (bool, string) {
			got := r.counter(nodes, c.Metric, c.Reason)
			return got >= uint64(c.Min), fmt.Sprintf("%s is %d on nodes %v, want at least %d", name, got, nodes, c.Min)
		}})
	}
	if e.Running != nil {
		nodes, err := r.nodes(ctx, *e.Running)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond{name: label(fmt.Sprintf("running and caught up: %s", e.Running)), check: func() (bool, string) {
			for _, i := range nodes {
				if !r.m.Running(i) {
					return false, fmt.Sprintf("node %d is not running", i)
				}
				n := r.m.Nodes[i]
				for j, o := range r.m.Nodes {
					if r.m.Running(j) && !n.Consensus().IsMember(o.ID()) {
						return false, fmt.Sprintf("node %d does not have node %d on its roster", i, j)
					}
				}
				if len(n.Gossip().Peers()) == 0 {
					return false, fmt.Sprintf("node %d has no gossip peer", i)
				}
			}
			return true, ""
		}})
	}
	if e.Voters > 0 {
		conds = append(conds, cond{name: label(fmt.Sprintf("%d voters", e.Voters)), check: func() (bool, string) {
			want := min(e.Voters, r.m.running())
			got := r.voters()
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
	_ = Poll(wctx, 20*time.Millisecond, func() (bool, string) {
		quiet, qwhy := r.quiet()
		all := true
		for i, c := range conds {
			if !pending[i] {
				continue
			}
			if c.settled && !quiet {
				why[i], all = "the mesh did not settle: "+qwhy, false
				continue
			}
			ok, w := c.check()
			if ok {
				pending[i], took[i] = false, ms(time.Since(start))
				continue
			}
			why[i], all = w, false
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

// voters counts the voters of the Raft configuration as the leader
// (the first running node that is one) sees it.
func (r *runner) voters() int {
	for i, n := range r.m.Nodes {
		if !r.m.Running(i) || !n.Consensus().IsLeader() {
			continue
		}
		v := 0
		for _, ms := range n.Consensus().Members() {
			if ms.Suffrage == consensus.SuffrageVoter {
				v++
			}
		}
		return v
	}
	return 0
}

// quiet reports whether every running node evaluated every sighting it
// stored, so that the absence of a block means something.
func (r *runner) quiet() (bool, string) {
	for i, n := range r.m.Nodes {
		if !r.m.Running(i) {
			continue
		}
		st := n.Stats()
		if st.Evaluations+st.EvaluationsDrop < st.SightingsStored {
			return false, fmt.Sprintf("node %d evaluated %d of %d sightings", i, st.Evaluations+st.EvaluationsDrop, st.SightingsStored)
		}
	}
	return true, ""
}

// committed: a running node holds the mesh-wide block of ind.
func (r *runner) committed(ind intel.Indicator) (bool, string) {
	id := intel.PolicyID(intel.ActionBlock, ind)
	for i, n := range r.m.Nodes {
		if r.m.Running(i) {
			if _, ok := n.Consensus().Policy(id, time.Now()); ok {
				return true, ""
			}
		}
	}
	return false, fmt.Sprintf("no running node holds a committed block of %s", ind.Value)
}

// enforced: each of nodes runs, holds the committed block of ind and
// enforces it.
func (r *runner) enforced(ind intel.Indicator, nodes []int) (bool, string) {
	if len(nodes) == 0 {
		return false, "no node selected"
	}
	id := intel.PolicyID(intel.ActionBlock, ind)
	for _, i := range nodes {
		if !r.m.Running(i) {
			return false, fmt.Sprintf("node %d is not running", i)
		}
		n := r.m.Nodes[i]
		if _, ok := n.Consensus().Policy(id, time.Now()); !ok {
			return false, fmt.Sprintf("node %d does not hold a committed block of %s", i, ind.Value)
		}
		if !n.Enforcing(ind) {
			return false, fmt.Sprintf("node %d holds the block of %s but does not enforce it", i, ind.Value)
		}
	}
	return true, ""
}

// notBlocked: no running node holds a block of ind or enforces one.
func (r *runner) notBlocked(ind intel.Indicator) (bool, string) {
	id := intel.PolicyID(intel.ActionBlock, ind)
	for i, n := range r.m.Nodes {
		if !r.m.Running(i) {
			continue
		}
		if _, ok := n.Consensus().Policy(id, time.Now()); ok {
			return false, fmt.Sprintf("node %d holds a mesh-wide block of %s", i, ind.Value)
		}
		if n.Enforcing(ind) {
			return false, fmt.Sprintf("node %d enforces a block of %s", i, ind.Value)
		}
	}
	return true, ""
}

// checkNeverAtEnd judges the never_blocked indicators again once the
// timeline is over and the mesh is quiet.
func (r *runner) checkNeverAtEnd(ctx context.Context) {
	if len(r.never) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	qerr := Poll(wctx, 20*time.Millisecond, r.quiet)
	for _, c := range r.never {
		res := ExpectResult{Step: c.step, Line: c.line, Name: "at the end: never blocked " + c.ind.Value, Passed: true}
		if qerr != nil {
			res.Passed, res.Reason = false, "the mesh did not settle: "+qerr.Error()
		} else if ok, why := r.notBlocked(c.ind); !ok {
			res.Passed, res.Reason = false, why
		}
		r.rep.Expectations = append(r.rep.Expectations, res)
	}
}

// counter sums a counter of the given nodes' registries, over the series
// whose reason label is reason (every series when reason is empty).
func (r *runner) counter(nodes []int, name, reason string) uint64 {
	var sum float64
	for _, i := range nodes {
		if !r.m.Running(i) {
			continue
		}
		mfs, err := r.m.Nodes[i].Metrics().Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if reason != "" {
					match := false
					for _, l := range m.GetLabel() {
						if l.GetName() == "reason" && strings.EqualFold(l.GetValue(), reason) {
							match = true
						}
					}
					if !match {
						continue
					}
				}
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return uint64(sum)
}
