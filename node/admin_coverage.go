package node

import (
	"slices"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel/attack"
)

var _ admin.CoverageService = riskAPI{}

// AttackCoverage maps the techniques of the rules in force onto the
// catalog in force; ok is false without a catalog.
func (a riskAPI) AttackCoverage() (admin.AttackCoverage, bool) {
	cat := a.n.deps.attack.get()
	if cat == nil {
		return admin.AttackCoverage{}, false
	}
	rules := a.n.deps.Detectors.rules()
	out := admin.AttackCoverage{Catalog: cat.Name, Rules: len(rules), Tactics: []admin.TacticCoverage{}, Problems: []admin.RuleProblem{}}
	var ids []string
	rulesOf := make(map[string][]string) // technique ID: rule names
	for _, r := range rules {
		if r.Technique == "" {
			out.Problems = append(out.Problems, admin.RuleProblem{Rule: r.Name, Problem: "the rule names no technique"})
			continue
		}
		if err := cat.Check(r.Technique); err != nil {
			out.Problems = append(out.Problems, admin.RuleProblem{Rule: r.Name, Technique: r.Technique, Problem: err.Error()})
			continue
		}
		id, _ := attack.NormalizeID(r.Technique)
		ids = append(ids, id)
		rulesOf[id] = append(rulesOf[id], r.Name)
	}
	cov, _ := cat.Coverage(ids)
	for _, tc := range cov {
		t := admin.TacticCoverage{ID: tc.Tactic.ID, Name: tc.Tactic.Name, Techniques: tc.Techniques, Covered: tc.Covered, Rules: []string{}}
		for _, id := range tc.Named {
			for _, name := range rulesOf[id] {
				if !slices.Contains(t.Rules, name) {
					t.Rules = append(t.Rules, name)
				}
			}
		}
		slices.Sort(t.Rules)
		out.Tactics = append(out.Tactics, t)
	}
	return out, true
}
