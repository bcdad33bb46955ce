package detectors

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

// accountBurstRule learns, per account, how many failed SSH logins a
// minute are usual.
func accountBurstRule() Rule {
	return Rule{
		Name:       "account-failure-burst",
		Match:      []Condition{{Field: "kind", In: []string{"ssh_failed"}}},
		Anomaly:    &AnomalyRule{Key: "user", Bucket: time.Minute, Warmup: 10, MinCount: 10, Deviation: 4},
		Technique:  "T1110.003",
		Severity:   intel.SeverityMedium,
		Confidence: 50,
	}
}

// failUser is a failed login for user from addr at base+d.
func failUser(d time.Duration, user, addr string) string {
	return base.Add(d).Format(time.Stamp) + " web-1 sshd[4242]: Failed password for " + user + " from " + addr + " port 52311 ssh2"
}

// quietMinutes are n minutes, from minute from, in which user fails twice
// a minute from two addresses: the account's usual noise.
func quietMinutes(user string, from, n int) []string {
	var lines []string
	for m := from; m < from+n; m++ {
		at := time.Duration(m) * time.Minute
		lines = append(lines,
			failUser(at+5*time.Second, user, fmt.Sprintf("198.51.100.%d", m%200+1)),
			failUser(at+35*time.Second, user, fmt.Sprintf("192.0.2.%d", m%200+1)))
	}
	return lines
}

// burst is minute m with 30 failures for user from ten addresses,
// 203.0.113.1 the busiest (12 of them).
func burst(user string, m int) []string {
	at := time.Duration(m) * time.Minute
	var lines []string
	for i := range 12 {
		lines = append(lines, failUser(at+time.Duration(i)*time.Second, user, "203.0.113.1"))
	}
	for i := range 18 {
		lines = append(lines, failUser(at+time.Duration(20+i)*time.Second, user, fmt.Sprintf("203.0.113.%d", 2+i%9)))
	}
	return lines
}

func TestAnomalyFiresOnBurstAgainstBaseline(t *testing.T) {
	e := newTestEngine(t, accountBurstRule(), EngineOptions{})
	if got := feedAll(e, quietMinutes("alice", 0, 15)...); len(got) != 0 {
		t.Fatalf("usual noise fired: %+v", got)
	}
	got := feedAll(e, burst("alice", 15)...)
	if len(got) != 5 {
		t.Fatalf("%d sightings, want the burst's top 5 sources: %+v", len(got), got)
	}
	if got[0].Indicator.Value != "203.0.113.1" || got[0].Count < 10 {
		t.Errorf("first sighting %+v, want the busiest source 203.0.113.1", got[0])
	}
	seen := map[string]bool{}
	for _, s := range got {
		if s.Detector != "account-failure-burst" || s.Technique != "T1110.003" || s.Severity != intel.SeverityMedium || s.Confidence != 50 {
			t.Errorf("sighting %+v does not carry the rule's name, technique, severity and confidence", s)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("sighting %+v: %v", s, err)
		}
		if seen[s.Indicator.Value] {
			t.Errorf("%s reported twice", s.Indicator.Value)
		}
		seen[s.Indicator.Value] = true
	}
	// It fires once a bucket.
	if more := feedAll(e, failUser(15*time.Minute+50*time.Second, "alice", "203.0.113.1")); len(more) != 0 {
		t.Errorf("fired again in the same bucket: %+v", more)
	}
	st := e.Stats()
	if st.Fired != 5 || st.Rules[0].Fired != 5 || st.Rules[0].Sources != 1 {
		t.Errorf("stats %+v, want five sightings and one key", st)
	}
}

func TestAnomalyNeedsWarmupAndOwnBaseline(t *testing.T) {
	e := newTestEngine(t, accountBurstRule(), EngineOptions{})
	// Before warm-up, even a burst is only learnt from.
	if got := feedAll(e, append(quietMinutes("alice", 0, 5), burst("alice", 5)...)...); len(got) != 0 {
		t.Fatalf("fired during warm-up: %+v", got)
	}
	// A noisy account has a baseline of its own: its usual 30 a minute
	// is no anomaly, and alice's quiet history does not make it one.
	e = newTestEngine(t, accountBurstRule(), EngineOptions{})
	var lines []string
	for m := range 15 {
		lines = append(lines, quietMinutes("alice", m, 1)...)
		lines = append(lines, burst("svc-backup", m)...)
	}
	if got := feedAll(e, lines...); len(got) != 0 {
		t.Fatalf("a regular load fired: %+v", got)
	}
	if got := feedAll(e, burst("svc-backup", 15)...); len(got) != 0 {
		t.Fatalf("svc-backup's usual 30 a minute fired: %+v", got)
	}
	if got := feedAll(e, burst("alice", 15)...); len(got) == 0 {
		t.Fatal("alice's burst did not fire")
	}
}

func TestAnomalySilenceDecaysBaseline(t *testing.T) {
	e := newTestEngine(t, accountBurstRule(), EngineOptions{})
	var lines []string
	for m := range 12 {
		lines = append(lines, burst("svc", m)...)
	}
	feedAll(e, lines...)
	// After a long silence the old level is forgotten: the same load is
	// unusual again.
	if got := feedAll(e, burst("svc", 12)...); len(got) != 0 {
		t.Fatalf("usual load fired: %+v", got)
	}
	if got := feedAll(e, burst("svc", 50)...); len(got) == 0 {
		t.Fatal("after 37 silent minutes the same load should stand out")
	}
}

func TestAnomalyKeysBounded(t *testing.T) {
	r := accountBurstRule()
	r.Anomaly.MaxKeys = 3
	e := newTestEngine(t, r, EngineOptions{})
	for i := range 5 {
		feedAll(e, failUser(time.Duration(i)*time.Second, fmt.Sprintf("user%d", i), "198.51.100.1"))
	}
	st := e.Stats()
	if st.Rules[0].Sources != 3 || st.Rules[0].Evicted != 2 || st.Evicted != 2 {
		t.Fatalf("keys %d evicted %d (engine %d), want 3 and 2", st.Rules[0].Sources, st.Rules[0].Evicted, st.Evicted)
	}
}

func TestAnomalyStateSurvivesRestart(t *testing.T) {
	e := newTestEngine(t, accountBurstRule(), EngineOptions{})
	feedAll(e, quietMinutes("alice", 0, 15)...)
	state, err := e.AnomalyState()
	if err != nil || len(state) == 0 {
		t.Fatalf("state %q, %v", state, err)
	}

	// Without the state a new engine is warming up and stays silent.
	fresh := newTestEngine(t, accountBurstRule(), EngineOptions{})
	if got := feedAll(fresh, burst("alice", 15)...); len(got) != 0 {
		t.Fatalf("a fresh engine fired during warm-up: %+v", got)
	}
	// With it, the next process knows alice's baseline.
	restarted := newTestEngine(t, accountBurstRule(), EngineOptions{})
	restored, skipped, err := restarted.RestoreAnomalies(state)
	if err != nil || restored != 1 || skipped != 0 {
		t.Fatalf("restore: %d restored, %d skipped, %v", restored, skipped, err)
	}
	if got := feedAll(restarted, burst("alice", 15)...); len(got) != 5 {
		t.Fatalf("restarted engine: %d sightings, want 5", len(got))
	}

	// A rule whose bucket changed starts over: its keys are skipped.
	changed := accountBurstRule()
	changed.Anomaly.Bucket = 5 * time.Minute
	other := newTestEngine(t, changed, EngineOptions{})
	if restored, skipped, err := other.RestoreAnomalies(state); err != nil || restored != 0 || skipped != 1 {
		t.Fatalf("changed rule: %d restored, %d skipped, %v; want 0, 1", restored, skipped, err)
	}

	// Malformed state is refused whole, naming where.
	for _, bad := range []string{
		`{"version":1,"rules":[{"rule":"account-failure-burst","key":"user","bucket":60000000000,"keys":[{"h":1,"mean":-1,"m2":0,"seen":3}]}]}`,
		`{"version":9,"rules":[]}`,
		`{"version":1,"rules":[`,
	} {
		e := newTestEngine(t, accountBurstRule(), EngineOptions{})
		_, _, err := e.RestoreAnomalies([]byte(bad))
		if !errors.Is(err, ErrAnomalyState) {
			t.Errorf("%s: err %v, want ErrAnomalyState", bad, err)
		}
		if e.Stats().Rules[0].Sources != 0 {
			t.Errorf("%s: keys restored from bad state", bad)
		}
	}
	_, _, err = newTestEngine(t, accountBurstRule(), EngineOptions{}).RestoreAnomalies([]byte(`{"version":1,"rules":[{"rule":"account-failure-burst","key":"user","bucket":60000000000,"keys":[{"h":1,"mean":-1,"m2":0,"seen":3}]}]}`))
	if err == nil || !strings.Contains(err.Error(), "rules[0]") || !strings.Contains(err.Error(), "keys[0]") {
		t.Errorf("error %v does not say where", err)
	}
}

func TestAnomalyRuleValidation(t *testing.T) {
	for name, mut := range map[string]func(*Rule){
		"anomaly":            func(r *Rule) { r.Threshold, r.Window = 5, time.Minute },
		"distinct":           func(r *Rule) { r.Distinct = "user" },
		"group_by":           func(r *Rule) { r.GroupBy = []string{"src"} },
		"cooldown":           func(r *Rule) { r.Cooldown = time.Minute },
		"anomaly.key":        func(r *Rule) { r.Anomaly.Key = "src" },
		"anomaly.bucket":     func(r *Rule) { r.Anomaly.Bucket = time.Millisecond },
		"anomaly.alpha":      func(r *Rule) { r.Anomaly.Alpha = 1.5 },
		"anomaly.deviation":  func(r *Rule) { r.Anomaly.Deviation = -1 },
		"anomaly.min_count":  func(r *Rule) { r.Anomaly.MinCount = -3 },
		"anomaly.warmup":     func(r *Rule) { r.Anomaly.Warmup = -1 },
		"anomaly.max_keys":   func(r *Rule) { r.Anomaly.MaxKeys = 2_000_000 },
		"anomaly.report_top": func(r *Rule) { r.Anomaly.ReportTop = 9 },
	} {
		r := accountBurstRule()
		mut(&r)
		_, err := NewRuleSet(r)
		if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), fmt.Sprintf("field %q", name)) {
			t.Errorf("%s: err %v, want an invalid rule naming field %q", name, err, name)
		}
	}
	if _, err := NewRulesEngine(mustRuleSet(t, accountBurstRule()), EngineOptions{Partial: &PartialOptions{Rules: []string{"account-failure-burst"}}}); err == nil {
		t.Error("an anomaly rule was accepted for sub-threshold summaries")
	}
}

func mustRuleSet(t *testing.T, r ...Rule) *RuleSet {
	t.Helper()
	rs, err := NewRuleSet(r...)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}
