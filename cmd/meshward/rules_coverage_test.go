package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel/attack"
	"github.com/meshward/meshward/internal/testenv"
)

// coverageRules add, to the built-in pack, a rule under Reconnaissance
// (T1595.001, Scanning IP Blocks), one naming an unknown technique and one
// naming a revoked one (T1066).
const coverageRules = `rules:
  - name: scan-ip-blocks
    match:
      - field: kind
        equals: ssh_failed
    threshold: 3
    window: 60s
    technique: T1595.001
    severity: low
    confidence: 10
  - name: unknown-technique
    match:
      - field: kind
        equals: ssh_failed
    threshold: 3
    window: 60s
    technique: T9999
    severity: low
    confidence: 10
  - name: revoked-technique
    match:
      - field: kind
        equals: ssh_failed
    threshold: 3
    window: 60s
    technique: T1066
    severity: low
    confidence: 10
`

// TestRulesCoverage maps the built-in pack plus a rules directory onto
// the shared ATT&CK catalog: every tactic is listed in matrix order, each
// rule shows under every tactic of its technique, a sub-technique covers
// its parent, and rules naming no active technique are listed as
// problems with the reason.
func TestRulesCoverage(t *testing.T) {
	catalogDir := testenv.SharedData(t, "attack")
	cat, err := attack.Load(catalogDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(coverageRules), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := runRules(t, "rules", "coverage", "--attack", catalogDir, "--rules-dir", dir, "-o", "json")
	var rep coverageReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("rules coverage -o json: %v\n%s", err, out)
	}
	builtin := detectors.BuiltinRules().Rules()
	if want := len(builtin) + 3; rep.Rules != want {
		t.Errorf("rules = %d, want %d", rep.Rules, want)
	}
	if len(rep.Tactics) != len(cat.Tactics()) {
		t.Fatalf("%d tactics, want the catalog's %d", len(rep.Tactics), len(cat.Tactics()))
	}
	byID := make(map[string]tacticCoverage)
	for i, tc := range rep.Tactics {
		if tc.ID != cat.Tactics()[i].ID {
			t.Errorf("tactic %d is %s, want %s (matrix order)", i, tc.ID, cat.Tactics()[i].ID)
		}
		byID[tc.ID] = tc
	}
	// Every rule of the built-in pack names an active technique, so each
	// shows up under every tactic of its technique, and its parent
	// technique counts as covered there.
	for _, r := range builtin {
		tech, ok := cat.Technique(r.Technique)
		if !ok {
			t.Fatalf("built-in rule %s: technique %s not in the catalog", r.Name, r.Technique)
		}
		for _, short := range tech.Tactics {
			ta, _ := cat.Tactic(short)
			tc := byID[ta.ID]
			if !slices.Contains(tc.Rules, r.Name) {
				t.Errorf("tactic %s: rules %v lack %s (technique %s)", ta.ID, tc.Rules, r.Name, r.Technique)
			}
			if !slices.Contains(tc.Covered, parentOf(tech.ID)) {
				t.Errorf("tactic %s: covered %v lacks %s (from rule %s)", ta.ID, tc.Covered, parentOf(tech.ID), r.Name)
			}
		}
	}
	recon := byID["TA0043"]
	if !slices.Contains(recon.Covered, "T1595") || !slices.Contains(recon.Rules, "scan-ip-blocks") {
		t.Errorf("reconnaissance: covered %v rules %v, want T1595 from scan-ip-blocks", recon.Covered, recon.Rules)
	}
	if recon.Techniques == 0 || len(recon.Covered) > recon.Techniques {
		t.Errorf("reconnaissance: %d covered of %d techniques", len(recon.Covered), recon.Techniques)
	}
	problems := make(map[string]string)
	for _, p := range rep.Problems {
		problems[p.Rule] = p.Problem
	}
	if len(rep.Problems) != 2 || !strings.Contains(problems["unknown-technique"], "unknown") || !strings.Contains(problems["revoked-technique"], "revoked") {
		t.Errorf("problems = %+v, want unknown-technique (unknown) and revoked-technique (revoked)", rep.Problems)
	}
	for _, tc := range rep.Tactics {
		if slices.Contains(tc.Rules, "unknown-technique") || slices.Contains(tc.Rules, "revoked-technique") {
			t.Errorf("tactic %s lists a rule whose technique is not active: %v", tc.ID, tc.Rules)
		}
	}

	table, _ := runRules(t, "rules", "coverage", "--attack", catalogDir, "--rules-dir", dir)
	for _, want := range []string{"TACTIC", "TA0006", "Credential Access", "ssh-bruteforce", "rule revoked-technique: technique T1066"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// TestRulesTechnique shows one technique with its tactics and
// sub-techniques, and the rules that report it: a technique collects the
// rules of its sub-techniques, a sub-technique only its own.
func TestRulesTechnique(t *testing.T) {
	catalogDir := testenv.SharedData(t, "attack")
	out, _ := runRules(t, "rules", "technique", "t1110", "--attack", catalogDir, "-o", "json")
	var v techniqueView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.ID != "T1110" || v.Name != "Brute Force" {
		t.Errorf("technique = %s %q, want T1110 Brute Force", v.ID, v.Name)
	}
	if !slices.ContainsFunc(v.Tactics, func(s string) bool { return strings.HasPrefix(s, "TA0006 ") }) {
		t.Errorf("tactics %v lack TA0006", v.Tactics)
	}
	if !slices.ContainsFunc(v.Subtechniques, func(s string) bool { return strings.HasPrefix(s, "T1110.001 ") }) {
		t.Errorf("sub-techniques %v lack T1110.001", v.Subtechniques)
	}
	var wantAll, wantSub []string
	for _, r := range detectors.BuiltinRules().Rules() {
		if parentOf(r.Technique) == "T1110" {
			wantAll = append(wantAll, r.Name)
		}
		if r.Technique == "T1110.001" {
			wantSub = append(wantSub, r.Name)
		}
	}
	slices.Sort(wantAll)
	slices.Sort(wantSub)
	if len(wantSub) == 0 || len(wantAll) <= len(wantSub) {
		t.Fatalf("the built-in pack should have T1110.001 rules and other T1110 ones: %v / %v", wantSub, wantAll)
	}
	if !slices.Equal(v.Rules, wantAll) {
		t.Errorf("T1110 rules = %v, want %v", v.Rules, wantAll)
	}
	out, _ = runRules(t, "rules", "technique", "T1110.001", "--attack", catalogDir, "-o", "json")
	v = techniqueView{}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Parent != "T1110" || v.ParentName != "Brute Force" || !slices.Equal(v.Rules, wantSub) {
		t.Errorf("T1110.001: parent %s %q rules %v, want T1110 Brute Force, %v", v.Parent, v.ParentName, v.Rules, wantSub)
	}

	// A revoked or unknown technique is an error naming why.
	for id, want := range map[string]string{"T1066": "revoked", "T9999": "unknown", "X12": "not an ATT&CK technique ID"} {
		root := newRootCmd()
		root.SetOut(&strings.Builder{})
		root.SetErr(&strings.Builder{})
		root.SetArgs([]string{"rules", "technique", id, "--attack", catalogDir})
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rules technique %s: err = %v, want one saying %q", id, err, want)
		}
	}
	// --attack is required.
	root := newRootCmd()
	root.SetOut(&strings.Builder{})
	root.SetErr(&strings.Builder{})
	root.SetArgs([]string{"rules", "coverage"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--attack is required") {
		t.Errorf("rules coverage without --attack: err = %v", err)
	}
}
