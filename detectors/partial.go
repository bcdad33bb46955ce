package detectors

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// Sub-threshold summaries (partial sightings).
//
// An attacker who tries two passwords at each of many sites never fires
// a rule anywhere. With PartialOptions set, the engine also counts, for
// the rules that take part, the events of each source that have not made
// a sighting, and TakePartials hands them out as partial sightings
// (intel.Sighting with Partial set): what each source did since the last
// call, never what a fired rule already reported. The mesh sums them
// across sites (node: the distributed rule; consensus: its proof).
//
// Bounds: the counts live in the rule's groups, which the engine bounds
// already (EngineOptions.MaxSources, least recently active evicted); a
// group evicted or expired with events not yet summarised is counted in
// PartialStats.Lost. One call returns at most TopN summaries, the sources
// with the most events first; the others are forgotten and counted in
// PartialStats.Dropped. Sources named by host name are not summarised.

// DefaultPartialTopN bounds the summaries of one TakePartials call.
const DefaultPartialTopN = 256

// maxPartialTopN bounds PartialOptions.TopN.
const maxPartialTopN = 65536

// PartialOptions turn on sub-threshold summaries.
type PartialOptions struct {
	// Rules names the rules summarised. Empty: every sliding-window rule
	// of technique T1110 (brute force) or one of its sub-techniques; the
	// leaky-bucket rules count the same events more slowly and are left
	// out unless named.
	Rules []string
	// TopN bounds the summaries of one call (default DefaultPartialTopN).
	TopN int
}

// PartialStats counts the engine's sub-threshold summaries.
type PartialStats struct {
	Emitted uint64 // partial sightings returned by TakePartials
	Dropped uint64 // sources beyond TopN in a call, forgotten
	Lost    uint64 // groups evicted or expired with events not yet summarised
	Events  uint64 // events counted towards a summary (those of a source that then fires go to its sighting instead)
}

// partialState is an engine's summary configuration.
type partialState struct {
	topN int
}

// setupPartials marks the rules that take part, or refuses options that
// name an unknown rule or a bad bound.
func (e *Engine) setupPartials(o *PartialOptions) error {
	if o == nil {
		return nil
	}
	topN := o.TopN
	switch {
	case topN == 0:
		topN = DefaultPartialTopN
	case topN < 0 || topN > maxPartialTopN:
		return fmt.Errorf("engine options: partial top_n %d, want 1..%d (0: default %d)", o.TopN, maxPartialTopN, DefaultPartialTopN)
	}
	e.partial = &partialState{topN: topN}
	if len(o.Rules) == 0 {
		for _, r := range e.rules {
			r.partial = !r.bucket && r.anomaly == nil && (r.Technique == "T1110" || strings.HasPrefix(r.Technique, "T1110."))
		}
		return nil
	}
	for i, name := range o.Rules {
		j := slices.IndexFunc(e.rules, func(r *ruleState) bool { return r.Name == name })
		if j < 0 {
			return fmt.Errorf("engine options: partial rules[%d]: no rule %q", i, name)
		}
		if e.rules[j].anomaly != nil {
			return fmt.Errorf("engine options: partial rules[%d]: %q is an anomaly rule: it has no per-source threshold to stay under", i, name)
		}
		e.rules[j].partial = true
	}
	return nil
}

// notePartial counts one event at t of group g towards its summary. The
// caller checked that the rule takes part and the group is not cooling
// down after a sighting.
func (e *Engine) notePartial(g *group, t int64) {
	if g.pending == 0 {
		g.pendFirst = t
	}
	g.pending++
	g.pendLast = t
	e.stats.Partial.Events++
}

// lostPartial counts a group dropped with events not yet summarised.
func (e *Engine) lostPartial(g *group) {
	if g.pending > 0 {
		e.stats.Partial.Lost++
	}
}

// PartialRules names the rules whose sub-threshold counts are summarised
// (none when PartialOptions were not set).
func (e *Engine) PartialRules() []string {
	var out []string
	for _, r := range e.rules {
		if r.partial {
			out = append(out, r.Name)
		}
	}
	return out
}

// TakePartials returns the sub-threshold summaries of the events counted
// since the last call, one per rule and source address (the groups of a
// rule's group_by fields that share the address are summed), at most
// TopN, most events first; then it forgets every count, those beyond TopN
// included (counted as dropped). A source whose rule fired has no summary
// of the events the sighting reported, nor of those of its cooldown. Times
// are those of the events, never after the engine's clock.
func (e *Engine) TakePartials() []intel.Sighting {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.partial == nil {
		return nil
	}
	type sum struct {
		r           *ruleState
		addr        netip.Addr
		n           int
		first, last int64
	}
	var sums []sum
	for _, r := range e.rules {
		if !r.partial {
			continue
		}
		at := map[netip.Addr]int{}
		for g := r.lru.next; g != &r.lru; g = g.next {
			if g.pending == 0 {
				continue
			}
			if i, ok := at[g.key.addr]; ok {
				s := &sums[i]
				s.n += g.pending
				s.first, s.last = min(s.first, g.pendFirst), max(s.last, g.pendLast)
			} else {
				at[g.key.addr] = len(sums)
				sums = append(sums, sum{r: r, addr: g.key.addr, n: g.pending, first: g.pendFirst, last: g.pendLast})
			}
			g.pending = 0
		}
	}
	slices.SortFunc(sums, func(a, b sum) int {
		return cmp.Or(cmp.Compare(b.n, a.n), a.addr.Compare(b.addr), cmp.Compare(a.r.Name, b.r.Name))
	})
	if len(sums) > e.partial.topN {
		e.stats.Partial.Dropped += uint64(len(sums) - e.partial.topN)
		sums = sums[:e.partial.topN]
	}
	now := e.now().UnixNano()
	out := make([]intel.Sighting, 0, len(sums))
	for _, s := range sums {
		first, last := min(s.first, now), min(s.last, now)
		out = append(out, intel.Sighting{
			Indicator:  intel.IndicatorFromAddr(s.addr),
			Detector:   s.r.Name,
			Technique:  s.r.Technique,
			Severity:   s.r.Severity,
			Confidence: s.r.Confidence,
			Count:      s.n,
			FirstSeen:  time.Unix(0, first).UTC(),
			LastSeen:   time.Unix(0, last).UTC(),
			Partial:    true,
		})
	}
	e.stats.Partial.Emitted += uint64(len(out))
	return out
}
