package attack

import (
	"slices"
	"strings"
)

// TacticCoverage says which techniques of one tactic a set of technique IDs
// (the techniques of the loaded rules, say) covers.
type TacticCoverage struct {
	Tactic *Tactic `json:"tactic"`
	// Techniques is the number of techniques (not sub-techniques) under
	// the tactic.
	Techniques int `json:"techniques"`
	// Covered are the IDs of the tactic's techniques that the set names,
	// or names a sub-technique of, in order.
	Covered []string `json:"covered"`
	// Named are the IDs of the set under the tactic, techniques and
	// sub-techniques, in order.
	Named []string `json:"named"`
}

// Coverage maps ids onto the tactics, in matrix order: for each tactic,
// which of its techniques they cover. A sub-technique covers its parent
// technique (T1110.001 covers T1110). IDs that do not name an active
// technique are returned as problems, each an error of Check (unknown,
// revoked, deprecated or malformed), once each.
func (c *Catalog) Coverage(ids []string) (cov []TacticCoverage, problems []error) {
	named := make(map[string]bool)
	seenBad := make(map[string]bool)
	for _, id := range ids {
		if err := c.Check(id); err != nil {
			if k := strings.ToUpper(strings.TrimSpace(id)); !seenBad[k] {
				seenBad[k] = true
				problems = append(problems, err)
			}
			continue
		}
		named[strings.ToUpper(strings.TrimSpace(id))] = true
	}
	perTactic := make(map[string]*TacticCoverage)
	for _, t := range c.Tactics() {
		cov = append(cov, TacticCoverage{Tactic: t, Covered: []string{}, Named: []string{}})
	}
	for i := range cov {
		perTactic[cov[i].Tactic.ShortName] = &cov[i]
	}
	for _, t := range c.Techniques() {
		for _, tactic := range t.Tactics {
			tc := perTactic[tactic]
			if tc == nil {
				continue
			}
			if !t.IsSubtechnique() {
				tc.Techniques++
			}
			if !named[t.ID] {
				continue
			}
			tc.Named = append(tc.Named, t.ID)
			parent := t.ID
			if t.IsSubtechnique() {
				parent = t.Parent
			}
			if !slices.Contains(tc.Covered, parent) {
				tc.Covered = append(tc.Covered, parent)
			}
		}
	}
	for i := range cov {
		slices.Sort(cov[i].Covered)
	}
	return cov, problems
}
