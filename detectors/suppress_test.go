package detectors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// sshPair is an engine of the built-in pack's two SSH brute force rules,
// the slow one suppressed by the fast one.
func sshPair(t *testing.T) *Engine {
	t.Helper()
	rs, err := BuiltinRules().Select("ssh-bruteforce", "ssh-slow-bruteforce")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewRulesEngine(rs, EngineOptions{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// failsEvery is n failures from addr, every gap from base+start.
func failsEvery(start, gap time.Duration, n int, addr string) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = failAt(start+time.Duration(i)*gap, addr)
	}
	return lines
}

func detectorsOf(ss []intel.Sighting) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Detector)
	}
	return out
}

func ruleStats(t *testing.T, e *Engine, name string) RuleStats {
	t.Helper()
	for _, r := range e.Stats().Rules {
		if r.Rule == name {
			return r
		}
	}
	t.Fatalf("no stats of rule %s", name)
	return RuleStats{}
}

// TestFastGuessReportedOnce: twelve failures a second apart fill both
// the fast rule's window and the slow rule's bucket; the fast rule
// reports the attack, and the slow rule's firing is suppressed and
// counted, once (it keeps quiet for its cooldown).
func TestFastGuessReportedOnce(t *testing.T) {
	e := sshPair(t)
	got := detectorsOf(feedAll(e, failsEvery(0, time.Second, 30, "203.0.113.7")...))
	if len(got) != 1 || got[0] != "ssh-bruteforce" {
		t.Fatalf("sightings by %v, want ssh-bruteforce alone", got)
	}
	if st := e.Stats(); st.Suppressed != 1 || st.Fired != 1 {
		t.Errorf("engine: %d suppressed, %d fired; want 1 and 1", st.Suppressed, st.Fired)
	}
	if rs := ruleStats(t, e, "ssh-slow-bruteforce"); rs.Suppressed != 1 || rs.Fired != 0 {
		t.Errorf("ssh-slow-bruteforce: %d suppressed, %d fired; want 1 and 0", rs.Suppressed, rs.Fired)
	}
	// Another source is a group of its own: its slow guess is reported.
	slow := detectorsOf(feedAll(e, failsEvery(time.Minute, 20*time.Second, 30, "203.0.113.8")...))
	if len(slow) != 1 || slow[0] != "ssh-slow-bruteforce" {
		t.Fatalf("a slow guess from another source: sightings by %v, want ssh-slow-bruteforce", slow)
	}
}

// TestSlowGuessAfterFastOneIsReported: suppression lasts while the fast
// rule is in its cooldown (60 s). A source that guessed fast, then keeps
// guessing under the fast rule's rate past that, is reported by the
// slow rule too.
func TestSlowGuessAfterFastOneIsReported(t *testing.T) {
	e := sshPair(t)
	lines := append(failsEvery(0, time.Second, 6, "203.0.113.9"), failsEvery(20*time.Second, 20*time.Second, 20, "203.0.113.9")...)
	got := detectorsOf(feedAll(e, lines...))
	if len(got) != 2 || got[0] != "ssh-bruteforce" || got[1] != "ssh-slow-bruteforce" {
		t.Fatalf("sightings by %v, want ssh-bruteforce then ssh-slow-bruteforce", got)
	}
	if st := e.Stats(); st.Suppressed != 0 {
		t.Errorf("%d suppressed, want 0", st.Suppressed)
	}
}

// TestSuppressorNotRunSuppressesNothing: an engine of the slow rule
// alone (a subset of the pack) reports the fast guess by it.
func TestSuppressorNotRunSuppressesNothing(t *testing.T) {
	r, _ := BuiltinRules().Get("ssh-slow-bruteforce")
	e := newTestEngine(t, r, EngineOptions{})
	got := detectorsOf(feedAll(e, failsEvery(0, time.Second, 12, "203.0.113.10")...))
	if len(got) != 1 || got[0] != "ssh-slow-bruteforce" {
		t.Fatalf("sightings by %v, want ssh-slow-bruteforce", got)
	}
}

// TestSuppressedByValidation: a rule that names itself, an unknown rule
// (in a rules directory) or a rule that groups otherwise is refused,
// and the error names the rule and the field.
func TestSuppressedByValidation(t *testing.T) {
	self := DefaultSSHRule()
	self.SuppressedBy = []string{self.Name}
	if _, err := NewEngine(self, EngineOptions{}); !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), "suppressed_by[0]") {
		t.Errorf("suppressed by itself: err = %v", err)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "local.yaml"), []byte(`rules:
  - name: ssh-very-slow
    match:
      - field: kind
        equals: ssh_failed
    threshold: 20
    window: 1h
    cooldown: 1h
    technique: T1110.001
    severity: low
    confidence: 50
    suppressed_by: [ssh-bruteforse]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadRules(dir)
	if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), `"ssh-very-slow"`) || !strings.Contains(err.Error(), "suppressed_by[0]") || !strings.Contains(err.Error(), "ssh-bruteforse") {
		t.Errorf("unknown suppressor: err = %v", err)
	}

	byUser := DefaultSSHRule()
	byUser.Name, byUser.GroupBy = "ssh-bruteforce-by-user", []string{"src", "user"}
	slow, _ := BuiltinRules().Get("ssh-slow-bruteforce")
	slow.SuppressedBy = []string{byUser.Name}
	rs, err := NewRuleSet(byUser, slow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRulesEngine(rs, EngineOptions{}); !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), "group_by") {
		t.Errorf("suppressor grouping otherwise: err = %v", err)
	}
}
