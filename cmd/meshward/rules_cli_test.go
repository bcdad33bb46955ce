package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshward/meshward/detectors"
)

// runRules runs the meshward root command with args and returns standard
// output and standard error apart.
func runRules(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("meshward %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// TestRulesListShowsEveryRule checks that `rules list` shows each rule
// of the built-in pack with its technique, severity and description.
func TestRulesListShowsEveryRule(t *testing.T) {
	out, _ := runRules(t, "rules", "list")
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "DESCRIPTION") {
		t.Fatalf("header %q has no DESCRIPTION", lines[0])
	}
	for _, r := range detectors.BuiltinRules().Rules() {
		var row string
		for _, l := range lines {
			if strings.HasPrefix(l, r.Name+" ") {
				row = l
			}
		}
		desc := strings.Join(strings.Fields(r.Description), " ")
		if row == "" || !strings.Contains(row, r.Technique) || !strings.Contains(row, string(r.Severity)) || !strings.HasSuffix(row, desc) {
			t.Errorf("rule %s: row %q lacks its technique %s, severity %s or description %q", r.Name, row, r.Technique, r.Severity, desc)
		}
	}
}

// TestRulesTestEveryFormat runs `rules test` on the golden input of each
// log family (syslog, web access and error logs, Exim's and the
// databases' own logs, JSON lines) and checks that each detection the
// detectors' golden file expects is printed.
func TestRulesTestEveryFormat(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "..", "detectors", "testdata", "rules", "*"))
	if err != nil || len(dirs) < 7 {
		t.Fatalf("cases: %v %v", dirs, err)
	}
	for _, dir := range dirs {
		if filepath.Base(dir) == "override" {
			continue // its rules come from the case directory
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want := map[string]bool{}
			expected, err := os.ReadFile(filepath.Join(dir, "expected"))
			if err != nil {
				t.Fatal(err)
			}
			for l := range strings.SplitSeq(string(expected), "\n") {
				var s struct {
					Indicator struct{ Value string }
					Detector  string
				}
				if json.Unmarshal([]byte(l), &s) == nil && s.Detector != "" {
					want[s.Detector+" "+s.Indicator.Value] = true
				}
			}
			out, errOut := runRules(t, "rules", "test", "-o", "json", "--allow", "192.0.2.0/24", filepath.Join(dir, "input"))
			got := map[string]bool{}
			for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
				var d struct{ Source, Rule string }
				if err := json.Unmarshal([]byte(l), &d); err != nil {
					t.Fatalf("output line %q: %v", l, err)
				}
				got[d.Rule+" "+d.Source] = true
			}
			for k := range want {
				if !got[k] {
					t.Errorf("detection %s missing; output:\n%s", k, out)
				}
			}
			for k := range got {
				if !want[k] {
					t.Errorf("unexpected detection %s", k)
				}
			}
			if !strings.Contains(errOut, " 0 malformed") {
				t.Errorf("stats: %s", errOut)
			}
		})
	}
}
