package detectors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRuleFileErrorsNameFileRuleField(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown key":           {"rules:\n  - name: a\n    match: [{field: kind, equals: ssh_failed}]\n    threshold: 5\n    window: 60s\n    thresold: 3\n", `rule "a": field "thresold" (line 6): unknown field`},
		"unknown condition key": {"rules:\n  - name: b\n    match:\n      - field: kind\n        eq: ssh_failed\n", `rule "b": field "eq"`},
		"bad type":              {"rules:\n  - name: c\n    threshold: many\n", `rule "c": field "threshold" (line 3)`},
		"bad field":             {"rules:\n  - name: d\n    match: [{field: colour, equals: red}]\n    threshold: 5\n    window: 60s\n    severity: low\n", `rule "d": field "match[0].field": unknown field "colour"`},
		"window without unit":   {"rules:\n  - name: e\n    match: [{field: kind, equals: ssh_failed}]\n    threshold: 5\n    window: 60\n    severity: low\n", `field "window"`},
		"unknown kind":          {"rules:\n  - name: f\n    match: [{field: kind, in: [ssh_oops]}]\n    threshold: 5\n    window: 60s\n    severity: low\n", `unknown kind "ssh_oops"`},
		"nested bad type":       {"rules:\n  - name: g\n    match:\n      - field: port\n        min: lots\n", `rule "g": field "match[0].min" (line 5): cannot unmarshal`},
		"second rule":           {"rules:\n  - name: h\n  - name: i\n    bucket: {capacity: x}\n", `rule "i": field "bucket.capacity" (line 4)`},
		"top-level key":         {"rulez: []\n", `field "rulez"`},
		"local kind only":       {"rules:\n  - name: j\n    match: [{field: kind, equals: local_auth_failure}]\n    threshold: 5\n    window: 60s\n    severity: low\n", `local_auth_failure names no remote party`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "custom.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadRules(dir)
			if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to name %s and contain %s", err, path, tc.want)
			}
		})
	}
}

func TestBuiltinPack(t *testing.T) {
	rs := BuiltinRules()
	want := []string{"ssh-bruteforce", "ssh-user-enum", "ssh-slow-bruteforce", "ssh-preauth-abuse", "ssh-kex-probe", "pam-bruteforce",
		"web-path-scan", "web-login-bruteforce", "port-scan", // builtin.yaml
		"k8s-api-denied", "aws-console-bruteforce", // cloud.yaml
		"db-bruteforce",                                               // db.yaml
		"ftp-bruteforce",                                              // ftp.yaml
		"mail-auth-bruteforce", "mail-auth-spray", "mail-relay-probe", // mail.yaml
		"vpn-bruteforce",                                                                                                                                                    // vpn.yaml
		"web-auth-bruteforce", "web-401-bruteforce", "web-rate-limited", "web-bad-bot", "wordpress-bruteforce", "web-sensitive-files", "web-log4shell", "web-exploit-probe", // web.yaml
	}
	var got []string
	for _, r := range rs.Rules() {
		got = append(got, r.Name)
		if r.Technique == "" || r.Severity == "" || strings.TrimSpace(r.Description) == "" {
			t.Errorf("rule %s: technique %q, severity %q, description %q: each must be set", r.Name, r.Technique, r.Severity, r.Description)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pack %v, want %v", got, want)
	}
	if _, err := rs.Select("nope"); err == nil {
		t.Fatal("unknown rule selected")
	}
	if _, err := NewRulesEngine(rs, EngineOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestEveryRuleHasGolden checks that each rule of the built-in pack fires
// in at least one golden case of testdata/rules (or the replay log), so
// that a rule cannot be added without its golden test.
func TestEveryRuleHasGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "rules", "*", "expected"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("testdata", "replay", "sightings.golden"))
	fired := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if i := strings.Index(line, `"detector":"`); i >= 0 {
				d := line[i+len(`"detector":"`):]
				fired[d[:strings.IndexByte(d, '"')]] = true
			}
		}
	}
	for _, r := range BuiltinRules().Rules() {
		if !fired[r.Name] {
			t.Errorf("rule %s fires in no golden case of testdata/rules", r.Name)
		}
	}
}
