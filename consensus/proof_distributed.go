package consensus

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meshward/meshward/intel"
)

// The distributed rule: an attacker who stays under every site's local
// threshold (two passwords at each of many sites) never makes a full
// sighting anywhere. Each site sends, instead, partial sightings
// (intel.Sighting.Partial: sub-threshold summaries, counts of events that
// fired nothing). An automatic block may be proven by them when
//
//   - they come from at least DistributedMinSites distinct roster members,
//   - every one was sent within the window (as every proof: proof_stale)
//     and counts no event before it (first_seen within the window),
//   - the sum over the members of each member's count, capped at
//     DistributedSiteCap (a member cannot claim more than a site that did
//     not fire could have seen; above it, it would have fired locally),
//     reaches DistributedThreshold.
//
// A partial is never full evidence: under MinNodes only full sightings
// count, so partials from MinNodes members, or fewer than the distributed
// rule needs, are refused. A mixed proof is accepted when its full
// sightings alone meet MinNodes, or when the whole proof meets the
// distributed rule, a full sighting counting there as its member's
// report of min(count, cap) events: a site that fired saw at least as
// much as one that did not. Refusals (counted as every refusal of the
// FSM, by reason):
//
//	partial_not_evidence    partials, too few full sightings, and the distributed rule is off
//	partial_too_few_sites   fewer distinct members than DistributedMinSites
//	partial_sum_short       the capped sum is below DistributedThreshold
//	partial_outside_window  a partial counts events from before the window

// Bounds of the distributed rule.
const (
	maxDistributedThreshold = 1 << 20
	maxDistributedSiteCap   = 1 << 16
)

// validateDistributed checks the distributed rule's fields: all zero
// (off), or at least two sites (one member can never block alone), no
// fewer than MinNodes (partial evidence is weaker than full), a positive
// threshold above one site's cap, and a positive cap.
func (r Rules) validateDistributed() error {
	k, sum, c := r.DistributedMinSites, r.DistributedThreshold, r.DistributedSiteCap
	switch {
	case k == 0 && sum == 0 && c == 0:
		return nil
	case k == 0:
		return fmt.Errorf("distributed_min_sites 0 (off) with distributed_threshold %d and distributed_site_cap %d: set both to 0, or the sites", sum, c)
	case k < 2 || k > maxMinNodes:
		return fmt.Errorf("distributed_min_sites %d: want 2..%d (0: off)", k, maxMinNodes)
	case k < r.MinNodes:
		return fmt.Errorf("distributed_min_sites %d: want at least min_nodes (%d)", k, r.MinNodes)
	case c < 1 || c > maxDistributedSiteCap:
		return fmt.Errorf("distributed_site_cap %d: want 1..%d", c, maxDistributedSiteCap)
	case sum <= c || sum > maxDistributedThreshold:
		return fmt.Errorf("distributed_threshold %d: want more than distributed_site_cap (%d), at most %d", sum, c, maxDistributedThreshold)
	}
	return nil
}

// DistributedOn reports whether the distributed rule is in force.
func (r Rules) DistributedOn() bool { return r.DistributedMinSites > 0 }

// SiteContribution is what one member's reports of an indicator count
// for under the distributed rule: the sum of their counts, capped.
func (r Rules) SiteContribution(counts ...int) int {
	n := 0
	for _, c := range counts {
		n = min(n+min(max(c, 0), r.DistributedSiteCap), r.DistributedSiteCap)
	}
	return n
}

// distributedTally gathers, while verifyProofs opens the proofs, what the
// distributed rule needs: each member's capped count and whether any
// proof is partial.
type distributedTally struct {
	partials int
	capped   int            // partial proofs whose count the cap cut
	perSite  map[string]int // member -> sum of counts so far, capped
}

// add counts proof i, a sighting s signed by origin, already checked for
// the indicator, the roster and the envelope's window. A partial that
// counts events from before from is refused.
func (d *distributedTally) add(r Rules, i int, origin string, s intel.Sighting, from time.Time) *RefusalError {
	if s.Partial {
		if s.FirstSeen.Before(from) {
			return refuse(CmdPutPolicy, "partial_outside_window", ErrRefused, "proof %d is a partial summary of events from %s, before the window's start %s",
				i, s.FirstSeen.Format(time.RFC3339), from.Format(time.RFC3339))
		}
		d.partials++
		if r.DistributedOn() && s.Count > r.DistributedSiteCap {
			d.capped++
		}
	}
	if !r.DistributedOn() {
		return nil
	}
	if d.perSite == nil {
		d.perSite = map[string]int{}
	}
	d.perSite[origin] = r.SiteContribution(d.perSite[origin], s.Count)
	return nil
}

// checkDistributed decides a proof whose full sightings come from fewer
// than MinNodes members (full of them): the distributed rule must hold,
// else the refusal names why. Without partials the refusal is the
// plain too_few_signers.
func (f *fsm) checkDistributed(ind intel.Indicator, d *distributedTally, full int) *RefusalError {
	const t = CmdPutPolicy
	r := f.rules
	if d.partials == 0 {
		return refuse(t, "too_few_signers", ErrRefused, "%d distinct members sighted %s, the mesh requires %d", full, ind, r.MinNodes)
	}
	if !r.DistributedOn() {
		return refuse(t, "partial_not_evidence", ErrRefused, "%d distinct members sighted %s in full, the mesh requires %d; %d partial summaries are not evidence (the distributed rule is off)",
			full, ind, r.MinNodes, d.partials)
	}
	sites := len(d.perSite)
	if sites < r.DistributedMinSites {
		return refuse(t, "partial_too_few_sites", ErrRefused, "%d distinct members reported %s (%d in full), the distributed rule requires %d",
			sites, ind, full, r.DistributedMinSites)
	}
	sum := 0
	for _, id := range slices.Sorted(maps.Keys(d.perSite)) {
		sum += d.perSite[id]
	}
	if sum < r.DistributedThreshold {
		return refuse(t, "partial_sum_short", ErrRefused, "%d members reported %d events of %s (each capped at %d; %d partials cut by the cap), the distributed rule requires %d",
			sites, sum, ind, r.DistributedSiteCap, d.capped, r.DistributedThreshold)
	}
	return nil
}

// setDistributed is the operator op set_distributed: the rule's three
// numbers, all zero to turn it off; checked with the rest of the rules.
func (f *fsm) setDistributed(cmd intel.OperatorCommand) (func(), *RefusalError) {
	r := f.rules
	r.DistributedMinSites, r.DistributedThreshold, r.DistributedSiteCap = cmd.DistributedMinSites, cmd.DistributedThreshold, cmd.DistributedSiteCap
	if err := r.Validate(); err != nil {
		return nil, refuse(CmdOperator, "malformed", ErrInvalidCommand, "%v", err)
	}
	return func() { f.rules = r }, nil
}
