package node

import "github.com/meshward/meshward/admin"

var _ admin.RuleService = statusAPI{}

// RuleTechnique is the ATT&CK technique of the rule named detector in
// the pack in force ("" when there is none), for the admin API's
// policies.
func (a statusAPI) RuleTechnique(detector string) string {
	for _, r := range a.n.deps.Detectors.rules() {
		if r.Name == detector {
			return r.Technique
		}
	}
	return ""
}
