package attack

import (
	"testing"

	"github.com/meshward/meshward/detectors"
)

// TestBuiltinRuleTechniques checks the technique of every built-in rule
// against ATT&CK: each must name an active technique, not an unknown,
// revoked or deprecated one.
func TestBuiltinRuleTechniques(t *testing.T) {
	c := loadShared(t)
	var ids []string
	for _, r := range detectors.BuiltinRules().Rules() {
		if r.Technique == "" {
			t.Errorf("rule %s has no technique", r.Name)
			continue
		}
		if err := c.Check(r.Technique); err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		}
		ids = append(ids, r.Technique)
	}
	if len(ids) == 0 {
		t.Fatal("no built-in rules")
	}
	cov, _ := c.Coverage(ids)
	for _, tc := range cov {
		if len(tc.Covered) > 0 {
			t.Logf("%-22s %d of %d techniques: %v", tc.Tactic.ShortName, len(tc.Covered), tc.Techniques, tc.Named)
		}
	}
}
