package node

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshward/meshward/internal/confcheck"
	"github.com/meshward/meshward/internal/testenv"
)

// A configured ATT&CK bundle that does not exist is a problem of
// intel.attack_path; one that exists, or none, is fine.
func TestIntelConfigAttackPath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	_, err := ParseConfig([]byte("intel:\n  attack_path: " + missing + "\n"))
	if err == nil {
		t.Fatal("a missing attack_path was accepted")
	}
	fields := confcheck.Fields(err)
	if len(fields) != 1 || fields[0].Field != "intel.attack_path" || fields[0].Value != missing {
		t.Fatalf("error %v, want one problem of intel.attack_path naming %s", err, missing)
	}
	if _, err := ParseConfig([]byte("intel:\n  attack_path: " + testenv.SharedData(t, "attack") + "\n")); err != nil {
		t.Fatalf("an existing attack_path: %v", err)
	}
	if _, err := ParseConfig([]byte("intel: {}\n")); err != nil {
		t.Fatalf("no attack_path: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the node's goroutines to log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// techniqueRules are two rules of a rules directory whose techniques are
// not active ATT&CK techniques: one unknown, one revoked (T1066, Indicator
// Removal from Tools).
const techniqueRules = `rules:
  - name: ssh-unknown-technique
    match:
      - field: kind
        equals: ssh_failed
    threshold: 3
    window: 60s
    technique: T9999
    severity: low
    confidence: 10
  - name: ssh-revoked-technique
    match:
      - field: kind
        equals: ssh_failed
    threshold: 3
    window: 60s
    technique: T1066
    severity: low
    confidence: 10
`

// techniqueWarningsMetric reads meshward_rules_technique_warnings by
// reason, and meshward_attack_load_failures_total.
func techniqueWarningsMetric(t *testing.T, n *Node) (map[string]float64, float64) {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	w, failures := map[string]float64{}, -1.0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "meshward_rules_technique_warnings":
			for _, m := range mf.GetMetric() {
				w[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		case "meshward_attack_load_failures_total":
			failures = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return w, failures
}

// With intel.attack_path set, the rules' techniques are checked at start:
// an unknown and a revoked one are logged and counted, and their rules
// stay in force and fire. A reload reads the bundle again: a corrupt one
// keeps the catalog in force and is counted; none clears the warnings.
func TestRuleTechniquesCheckedAgainstAttack(t *testing.T) {
	bundle := testenv.SharedData(t, "attack")
	rulesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "local.yaml"), []byte(techniqueRules), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	n := startSingleWith(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, func(c *Config) {
		c.Detectors.RulesDir = rulesDir
		c.Intel.AttackPath = bundle
	})
	want := map[string]float64{"unknown": 1, "revoked": 1, "deprecated": 0, "malformed": 0}
	checkWarnings := func(when string, want map[string]float64, wantFailures float64) {
		t.Helper()
		w, failures := techniqueWarningsMetric(t, n)
		for r, v := range want {
			if w[r] != v {
				t.Errorf("%s: meshward_rules_technique_warnings %v, want %v", when, w, want)
				break
			}
		}
		if failures != wantFailures {
			t.Errorf("%s: meshward_attack_load_failures_total %v, want %v", when, failures, wantFailures)
		}
	}
	checkWarnings("start", want, 0)
	out := logs.String()
	if !strings.Contains(out, "ATT&CK catalog loaded") {
		t.Error("the catalog's load was not logged")
	}
	for _, w := range []string{"rule=ssh-unknown-technique technique=T9999 reason=unknown", "rule=ssh-revoked-technique technique=T1066 reason=revoked"} {
		if !strings.Contains(out, w) {
			t.Errorf("no warning with %q in the log:\n%s", w, out)
		}
	}
	if strings.Contains(out, "rule=ssh-bruteforce ") {
		t.Error("a built-in rule with an active technique was warned about")
	}

	// The rules stay in force and fire.
	appendLog(t, n.deps.Config.Detectors.Paths[0], bruteForce("solo", "203.0.113.77", 4)...)
	waitFor(t, "both rules to fire", func() bool {
		fired := 0
		for _, r := range n.deps.Detectors.engine.Load().Stats().Rules {
			if (r.Rule == "ssh-unknown-technique" || r.Rule == "ssh-revoked-technique") && r.Fired > 0 {
				fired++
			}
		}
		return fired == 2
	})

	// A corrupt bundle on reload: the catalog in force stays, the
	// failure is counted and the reload goes through.
	corrupt := filepath.Join(t.TempDir(), "enterprise-attack.json")
	if err := os.WriteFile(corrupt, []byte(`{"type": "bundle", "objects": [{`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := n.deps.Config
	cfg.Intel.AttackPath = corrupt
	if err := n.Reload(func() (Config, error) { return cfg, nil }); err != nil {
		t.Fatalf("reload with a corrupt bundle: %v", err)
	}
	if n.deps.attack.get() == nil {
		t.Fatal("a corrupt bundle dropped the catalog in force")
	}
	checkWarnings("reload with a corrupt bundle", want, 1)

	// No bundle: no check, no warnings.
	cfg.Intel.AttackPath = ""
	if err := n.Reload(func() (Config, error) { return cfg, nil }); err != nil {
		t.Fatal(err)
	}
	checkWarnings("reload without a bundle", map[string]float64{"unknown": 0, "revoked": 0}, 1)

	// And back: the warnings are counted again.
	cfg.Intel.AttackPath = bundle
	if err := n.Reload(func() (Config, error) { return cfg, nil }); err != nil {
		t.Fatal(err)
	}
	checkWarnings("reload with the bundle", want, 1)
}

// A bundle that exists but does not load fails the start, naming the file.
func TestStartFailsOnCorruptAttackBundle(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(corrupt, []byte(`not json`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Detectors.Enabled = false
	cfg.Intel.AttackPath = corrupt
	n, err := Start(context.Background(), cfg, Options{})
	if err == nil {
		n.Close()
		t.Fatal("a node started with a corrupt ATT&CK bundle")
	}
	if !strings.Contains(err.Error(), "intel.attack_path") || !strings.Contains(err.Error(), corrupt) {
		t.Fatalf("error %q names neither intel.attack_path nor %s", err, corrupt)
	}
}
