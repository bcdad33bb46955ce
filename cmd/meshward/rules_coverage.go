// ATT&CK context for the rules, offline: which techniques the rules in
// effect cover, tactic by tactic (`meshward rules coverage`), and what one
// technique is and which rules report it (`meshward rules technique`).
// Both read the Enterprise ATT&CK bundle given by --attack, the same file
// a node's intel.attack_path names.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel/attack"
)

// The JSON form of `rules coverage` is the admin API's (GET /v1/coverage):
// one shape for the file-based command and the node's answer.
type (
	coverageReport = admin.AttackCoverage
	tacticCoverage = admin.TacticCoverage
	ruleProblem    = admin.RuleProblem
)

func newRulesCoverageCmd() *cobra.Command {
	var dir, attackPath, output string
	cmd := &cobra.Command{
		Use:   "coverage --attack FILE",
		Short: "Show which ATT&CK techniques the rules in effect cover, tactic by tactic",
		Long: `Coverage maps the technique of every rule in effect (the built-in pack plus
--rules-dir) onto the ATT&CK matrix read from --attack (a bundle file, or a
directory holding enterprise-attack.json): for each tactic, how many of its
techniques at least one rule reports (a sub-technique covers its parent),
and which rules. Rules naming a technique the catalog does not hold as
active (unknown, revoked, deprecated, malformed) are listed after the table.`,
		Example: "  meshward rules coverage --attack /usr/share/meshward/attack\n  meshward rules coverage --attack enterprise-attack.json -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			cat, rs, err := loadCatalogAndRules(attackPath, dir)
			if err != nil {
				return err
			}
			rep := coverage(cat, rs)
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			return printCoverage(cmd.OutOrStdout(), rep)
		},
	}
	attackFlags(cmd, &attackPath, &dir, &output)
	return cmd
}

func newRulesTechniqueCmd() *cobra.Command {
	var dir, attackPath, output string
	cmd := &cobra.Command{
		Use:   "technique ID --attack FILE",
		Short: "Show an ATT&CK technique: its name, tactics, sub-techniques, and the rules that report it",
		Example: "  meshward rules technique T1110 --attack /usr/share/meshward/attack\n" +
			"  meshward rules technique t1110.001 --attack enterprise-attack.json -o json",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			id, err := attack.NormalizeID(args[0])
			if err != nil {
				return err
			}
			cat, rs, err := loadCatalogAndRules(attackPath, dir)
			if err != nil {
				return err
			}
			if err := cat.Check(id); err != nil {
				return err
			}
			info := techniqueInfo(cat, rs, id)
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			return printTechnique(cmd.OutOrStdout(), info)
		},
	}
	attackFlags(cmd, &attackPath, &dir, &output)
	return cmd
}

// attackFlags are the flags of the commands that read the ATT&CK bundle.
func attackFlags(cmd *cobra.Command, attackPath, dir, output *string) {
	cmd.Flags().StringVar(attackPath, "attack", "", "the ATT&CK Enterprise bundle: a file, or a directory holding enterprise-attack.json (required)")
	cmd.Flags().StringVar(dir, "rules-dir", "", "directory of *.yaml rule files that add to or override the built-in pack")
	cmd.Flags().StringVarP(output, "output", "o", "table", "output format: table or json")
}

// writeJSON writes v indented.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func loadCatalogAndRules(attackPath, dir string) (*attack.Catalog, *detectors.RuleSet, error) {
	if attackPath == "" {
		return nil, nil, errors.New("--attack is required: the ATT&CK Enterprise bundle (a file, or a directory holding enterprise-attack.json)")
	}
	cat, err := attack.Load(attackPath)
	if err != nil {
		return nil, nil, err
	}
	rs, err := loadRuleSet(dir, nil)
	if err != nil {
		return nil, nil, err
	}
	return cat, rs, nil
}

// parentOf is the technique a (sub-)technique ID belongs to.
func parentOf(id string) string {
	if i := strings.IndexByte(id, '.'); i >= 0 {
		return id[:i]
	}
	return id
}

func coverage(cat *attack.Catalog, rs *detectors.RuleSet) coverageReport {
	rules := rs.Rules()
	var ids []string
	rulesOf := make(map[string][]string) // canonical technique ID: rule names
	rep := coverageReport{Catalog: cat.Name, Rules: len(rules), Problems: []ruleProblem{}}
	for _, r := range rules {
		if r.Technique == "" {
			rep.Problems = append(rep.Problems, ruleProblem{Rule: r.Name, Problem: "the rule names no technique"})
			continue
		}
		if err := cat.Check(r.Technique); err != nil {
			rep.Problems = append(rep.Problems, ruleProblem{Rule: r.Name, Technique: r.Technique, Problem: err.Error()})
			continue
		}
		id, _ := attack.NormalizeID(r.Technique)
		ids = append(ids, id)
		rulesOf[id] = append(rulesOf[id], r.Name)
	}
	cov, _ := cat.Coverage(ids)
	for _, tc := range cov {
		out := tacticCoverage{ID: tc.Tactic.ID, Name: tc.Tactic.Name, Techniques: tc.Techniques, Covered: tc.Covered, Rules: []string{}}
		for _, id := range tc.Named {
			for _, name := range rulesOf[id] {
				if !slices.Contains(out.Rules, name) {
					out.Rules = append(out.Rules, name)
				}
			}
		}
		slices.Sort(out.Rules)
		rep.Tactics = append(rep.Tactics, out)
	}
	return rep
}

func printCoverage(w io.Writer, rep coverageReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TACTIC\tNAME\tCOVERED\tTECHNIQUES\tRULES")
	covered, total := 0, 0
	for _, t := range rep.Tactics {
		covered += len(t.Covered)
		total += t.Techniques
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Name, len(t.Covered), t.Techniques,
			dash(strings.Join(t.Covered, ",")), dash(strings.Join(t.Rules, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d rules; %d technique-tactic pairs covered of %d in %s\n", rep.Rules, covered, total, rep.Catalog)
	for _, p := range rep.Problems {
		if p.Technique == "" {
			fmt.Fprintf(w, "rule %s: %s\n", p.Rule, p.Problem)
			continue
		}
		fmt.Fprintf(w, "rule %s: technique %s: %s\n", p.Rule, p.Technique, p.Problem)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// techniqueView is the JSON form of `rules technique`.
type techniqueView struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Parent        string   `json:"parent,omitempty"`
	ParentName    string   `json:"parent_name,omitempty"`
	Tactics       []string `json:"tactics"` // "TA0006 Credential Access"
	Platforms     []string `json:"platforms,omitempty"`
	URL           string   `json:"url,omitempty"`
	Subtechniques []string `json:"subtechniques"`
	// Rules report the technique itself or one of its sub-techniques (for
	// a technique), or exactly the sub-technique (for a sub-technique).
	Rules []string `json:"rules"`
}

func techniqueInfo(cat *attack.Catalog, rs *detectors.RuleSet, id string) techniqueView {
	t, _ := cat.Technique(id)
	v := techniqueView{ID: t.ID, Name: t.Name, Parent: t.Parent, Platforms: t.Platforms, URL: t.URL,
		Tactics: []string{}, Subtechniques: []string{}, Rules: []string{}}
	if p, ok := cat.Technique(t.Parent); ok {
		v.ParentName = p.Name
	}
	for _, short := range t.Tactics {
		if ta, ok := cat.Tactic(short); ok {
			v.Tactics = append(v.Tactics, ta.ID+" "+ta.Name)
		} else {
			v.Tactics = append(v.Tactics, short)
		}
	}
	for _, sub := range cat.Subtechniques(id) {
		if s, ok := cat.Technique(sub); ok {
			v.Subtechniques = append(v.Subtechniques, s.ID+" "+s.Name)
		}
	}
	for _, r := range rs.Rules() {
		rid, err := attack.NormalizeID(r.Technique)
		if err != nil {
			continue
		}
		if rid == id || (!t.IsSubtechnique() && parentOf(rid) == id) {
			v.Rules = append(v.Rules, r.Name)
		}
	}
	slices.Sort(v.Rules)
	return v
}

func printTechnique(w io.Writer, v techniqueView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\t%s\n", v.ID)
	fmt.Fprintf(tw, "NAME\t%s\n", v.Name)
	if v.Parent != "" {
		fmt.Fprintf(tw, "PARENT\t%s %s\n", v.Parent, v.ParentName)
	}
	fmt.Fprintf(tw, "TACTICS\t%s\n", dash(strings.Join(v.Tactics, "; ")))
	if len(v.Platforms) > 0 {
		fmt.Fprintf(tw, "PLATFORMS\t%s\n", strings.Join(v.Platforms, ", "))
	}
	if v.URL != "" {
		fmt.Fprintf(tw, "URL\t%s\n", v.URL)
	}
	if len(v.Subtechniques) > 0 {
		fmt.Fprintf(tw, "SUB-TECHNIQUES\t%s\n", strings.Join(v.Subtechniques, "; "))
	}
	fmt.Fprintf(tw, "RULES\t%s\n", dash(strings.Join(v.Rules, ", ")))
	return tw.Flush()
}
