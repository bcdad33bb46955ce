package admin

import "fmt"

// CoverageService is the ATT&CK coverage of the rules in force, for GET
// /v1/coverage (the dashboard's ATT&CK page); the node implements it when
// it has rules and may have a catalog.
type CoverageService interface {
	// AttackCoverage maps the techniques of the rules in force onto the
	// catalog's tactics; ok is false when the node has no ATT&CK catalog.
	AttackCoverage() (cov AttackCoverage, ok bool)
}

// AttackCoverage is which techniques the rules in force report, tactic
// by tactic, in matrix order (meshward rules coverage, from the node).
type AttackCoverage struct {
	Catalog  string           `json:"catalog"`
	Rules    int              `json:"rules"`
	Tactics  []TacticCoverage `json:"tactics"`
	Problems []RuleProblem    `json:"problems"`
}

// TacticCoverage is one tactic's coverage: of its Techniques, those
// Covered (by a rule naming it or one of its sub-techniques), and the
// rules that do, in name order.
type TacticCoverage struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Techniques int      `json:"techniques"`
	Covered    []string `json:"covered"`
	Rules      []string `json:"rules"`
}

// RuleProblem is a rule whose technique covers nothing: none named, or
// not an active technique of the catalog.
type RuleProblem struct {
	Rule      string `json:"rule"`
	Technique string `json:"technique,omitempty"`
	Problem   string `json:"problem"`
}

// getCoverage answers the ATT&CK coverage of the rules in force.
func getCoverage(s *Server, _ *call) (any, error) {
	cs, ok := s.opts.Node.(CoverageService)
	if !ok {
		return nil, fmt.Errorf("%w: this node does not report its rules' coverage", ErrUnavailable)
	}
	cov, ok := cs.AttackCoverage()
	if !ok {
		return nil, fmt.Errorf("%w: this node has no ATT&CK catalog (intel.attack_path)", ErrUnavailable)
	}
	return cov, nil
}
