package node

import "sync/atomic"

// Stats are a node's counters.
type Stats struct {
	Detections       uint64 `json:"detections"`
	Suppressed       uint64 `json:"detections_suppressed"` // of the mesh's own (protected) addresses
	SightingsStored  uint64 `json:"sightings_stored"`
	Evaluations      uint64 `json:"evaluations"`
	EvaluationsDrop  uint64 `json:"evaluations_dropped"`
	Proposals        uint64 `json:"proposals"`
	ProposalsRefused uint64 `json:"proposals_refused"`
	ProposalErrors   uint64 `json:"proposal_errors"`
	LocalDecisions   uint64 `json:"local_decisions"`
	IndicatorReports uint64 `json:"indicator_reports"`
	Reloads          uint64 `json:"reloads"`
	ReloadFailures   uint64 `json:"reload_failures"`
}

// counters are the atomics behind Stats; the hot paths only bump them.
type counters struct {
	detections, suppressed, stored, evals, evalDrops, proposals, refused, propErrs, local, reports atomic.Uint64
	reloads, reloadFailures, deferred                                                              atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Detections:       c.detections.Load(),
		Suppressed:       c.suppressed.Load(),
		SightingsStored:  c.stored.Load(),
		Evaluations:      c.evals.Load(),
		EvaluationsDrop:  c.evalDrops.Load(),
		Proposals:        c.proposals.Load(),
		ProposalsRefused: c.refused.Load(),
		ProposalErrors:   c.propErrs.Load(),
		LocalDecisions:   c.local.Load(),
		IndicatorReports: c.reports.Load(),
		Reloads:          c.reloads.Load(),
		ReloadFailures:   c.reloadFailures.Load(),
	}
}

// counterMap is Stats as the admin API's status shows it.
func (s Stats) counterMap() map[string]uint64 {
	return map[string]uint64{
		"detections": s.Detections, "detections_suppressed": s.Suppressed, "sightings_stored": s.SightingsStored,
		"evaluations": s.Evaluations, "evaluations_dropped": s.EvaluationsDrop,
		"proposals": s.Proposals, "proposals_refused": s.ProposalsRefused,
		"proposal_errors": s.ProposalErrors, "local_decisions": s.LocalDecisions,
		"indicator_reports": s.IndicatorReports, "reloads": s.Reloads, "reload_failures": s.ReloadFailures,
	}
}
