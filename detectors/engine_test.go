package detectors

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

var base = time.Date(2024, 11, 28, 12, 0, 0, 0, time.UTC)

// fixedNow is a clock a little after base, so that classic stamps land in
// base's year.
func fixedNow() time.Time { return base.Add(time.Hour) }

// failAt is a classic sshd failure line from addr at base+d.
func failAt(d time.Duration, addr string) string {
	return base.Add(d).Format(time.Stamp) + " web-1 sshd[4242]: Failed password for root from " + addr + " port 52311 ssh2"
}

func newTestEngine(t testing.TB, rule Rule, opts EngineOptions) *Engine {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	e, err := NewEngine(rule, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// feedAll feeds lines and returns the sightings.
func feedAll(e *Engine, lines ...string) []intel.Sighting {
	var out []intel.Sighting
	for _, l := range lines {
		if s, ok := e.Feed(l); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestThreshold(t *testing.T) {
	const a = "203.0.113.7"
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	var lines []string
	for i := range 4 {
		lines = append(lines, failAt(time.Duration(i)*10*time.Second, a))
	}
	if got := feedAll(e, lines...); len(got) != 0 {
		t.Fatalf("4 failures in 60s fired: %+v", got)
	}
	got := feedAll(e, failAt(59*time.Second, a))
	if len(got) != 1 {
		t.Fatalf("5th failure: %d sightings, want 1", len(got))
	}
	s := got[0]
	want := intel.Sighting{
		Indicator:  intel.Indicator{Type: intel.IPv4, Value: a},
		Detector:   "ssh-bruteforce",
		Technique:  "T1110.001",
		Severity:   intel.SeverityHigh,
		Confidence: 80,
		Count:      5,
		FirstSeen:  base,
		LastSeen:   base.Add(59 * time.Second),
	}
	if s != want {
		t.Fatalf("sighting\n got %+v\nwant %+v", s, want)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("sighting does not validate: %v", err)
	}
	st := e.Stats()
	if st.Lines != 5 || st.Matched != 5 || st.Fired != 1 || st.Sources != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWindowSlides(t *testing.T) {
	const a = "203.0.113.7"
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	// Five failures spread over 61 s never have five within 60 s.
	var lines []string
	for i := range 5 {
		lines = append(lines, failAt(time.Duration(i)*15250*time.Millisecond, a))
	}
	if got := feedAll(e, lines...); len(got) != 0 {
		t.Fatalf("failures spread over 61s fired: %+v", got)
	}
	// The window is inclusive: five within exactly 60 s fire.
	e = newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	lines = lines[:0]
	for i := range 5 {
		lines = append(lines, failAt(time.Duration(i)*15*time.Second, a))
	}
	if got := feedAll(e, lines...); len(got) != 1 || got[0].Count != 5 {
		t.Fatalf("five failures within 60s: %+v", got)
	}
}

func TestCooldown(t *testing.T) {
	const a, b = "203.0.113.7", "2001:db8::7"
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	var fired []time.Duration
	var counts []int
	// One failure every 5 s for 3 minutes from a, plus one burst from b.
	for i := range 36 {
		d := time.Duration(i) * 5 * time.Second
		if s, ok := e.Feed(failAt(d, a)); ok {
			fired = append(fired, s.LastSeen.Sub(base))
			counts = append(counts, s.Count)
		}
	}
	// Fires at 20 s (5th), then not before 80 s, then not before 140 s.
	want := []time.Duration{20 * time.Second, 80 * time.Second, 140 * time.Second}
	if fmt.Sprint(fired) != fmt.Sprint(want) {
		t.Fatalf("fired at %v, want %v", fired, want)
	}
	// After the first, a sighting counts every failure in the window.
	if fmt.Sprint(counts) != "[5 13 13]" {
		t.Fatalf("counts %v, want [5 13 13]", counts)
	}
	// Cooldown is per source.
	for i := range 5 {
		if s, ok := e.Feed(failAt(time.Duration(i)*time.Second, b)); ok != (i == 4) {
			t.Fatalf("source b, failure %d: fired=%v", i+1, ok)
		} else if ok && s.Indicator != (intel.Indicator{Type: intel.IPv6, Value: b}) {
			t.Fatalf("indicator %v", s.Indicator)
		}
	}
}

func TestZeroCooldownFiresEveryEventPastThreshold(t *testing.T) {
	r := DefaultSSHRule()
	r.Cooldown = 0
	e := newTestEngine(t, r, EngineOptions{})
	n := 0
	for i := range 8 {
		if _, ok := e.Feed(failAt(time.Duration(i)*time.Second, "203.0.113.7")); ok {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("fired %d times, want 4", n)
	}
}

func TestInvalidUserCountedOncePerAttempt(t *testing.T) {
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	stamp := base.Format(time.Stamp) + " web-1 sshd[1]: "
	var lines []string
	// Four connections, each an invalid user and one password attempt:
	// eight lines, four attempts.
	for p := range 4 {
		lines = append(lines,
			stamp+fmt.Sprintf("Invalid user admin from 203.0.113.7 port %d", 40000+p),
			stamp+fmt.Sprintf("Failed password for invalid user admin from 203.0.113.7 port %d ssh2", 40000+p))
	}
	if got := feedAll(e, lines...); len(got) != 0 {
		t.Fatalf("four attempts fired: %+v", got)
	}
	// A second password on the last connection is a fifth attempt.
	got := feedAll(e, stamp+"Failed password for invalid user admin from 203.0.113.7 port 40003 ssh2")
	if len(got) != 1 || got[0].Count != 5 {
		t.Fatalf("fifth attempt: %+v", got)
	}
	if st := e.Stats(); st.Coalesced != 4 || st.Matched != 9 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAllowList(t *testing.T) {
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{Allow: []netip.Prefix{
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
	}})
	for i := range 10 {
		for _, a := range []string{"203.0.113.7", "2001:db8::7", "::ffff:203.0.113.8"} {
			if s, ok := e.Feed(failAt(time.Duration(i)*time.Second, a)); ok {
				t.Fatalf("allowed source reported: %+v", s)
			}
		}
	}
	if st := e.Stats(); st.Allowed != 30 || st.Sources != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCapEvictsOldest(t *testing.T) {
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{MaxSources: 3})
	feed4 := func(a string, start time.Duration) {
		for i := range 4 {
			if _, ok := e.Feed(failAt(start+time.Duration(i)*time.Second, a)); ok {
				t.Fatalf("%s fired early", a)
			}
		}
	}
	feed4("198.51.100.1", 0) // A
	feed4("198.51.100.2", 0) // B
	feed4("198.51.100.3", 0) // C
	if st := e.Stats(); st.Sources != 3 || st.Evicted != 0 {
		t.Fatalf("stats %+v", st)
	}
	feedAll(e, failAt(5*time.Second, "198.51.100.4")) // D evicts A, the least recently active
	if st := e.Stats(); st.Sources != 3 || st.Evicted != 1 {
		t.Fatalf("stats %+v", st)
	}
	// B kept its four failures: its fifth fires.
	if got := feedAll(e, failAt(6*time.Second, "198.51.100.2")); len(got) != 1 {
		t.Fatalf("B's fifth failure: %+v", got)
	}
	// A starts over (and evicts C, now the oldest).
	if got := feedAll(e, failAt(7*time.Second, "198.51.100.1")); len(got) != 0 {
		t.Fatalf("evicted A fired: %+v", got)
	}
	if st := e.Stats(); st.Sources != 3 || st.Evicted != 2 {
		t.Fatalf("stats %+v", st)
	}
	if got := feedAll(e, failAt(8*time.Second, "198.51.100.3")); len(got) != 0 {
		t.Fatalf("evicted C fired: %+v", got)
	}
}

func TestIdleSourcesExpire(t *testing.T) {
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	feedAll(e, failAt(0, "198.51.100.1"), failAt(time.Second, "198.51.100.2"))
	feedAll(e, failAt(10*time.Minute, "198.51.100.3"))
	if st := e.Stats(); st.Sources != 1 || st.Expired != 2 || st.Evicted != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLinesWithoutStampUseNow(t *testing.T) {
	now := base
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{Now: func() time.Time { return now }})
	var got []intel.Sighting
	for range 5 {
		now = now.Add(2 * time.Second)
		got = append(got, feedAll(e, "sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2")...)
	}
	if len(got) != 1 || !got[0].FirstSeen.Equal(base.Add(2*time.Second)) || !got[0].LastSeen.Equal(base.Add(10*time.Second)) {
		t.Fatalf("sightings %+v", got)
	}
}

func TestOutOfOrderStampsKeepSightingValid(t *testing.T) {
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	got := feedAll(e,
		failAt(30*time.Second, "203.0.113.7"),
		failAt(10*time.Second, "203.0.113.7"),
		failAt(40*time.Second, "203.0.113.7"),
		failAt(20*time.Second, "203.0.113.7"),
		failAt(50*time.Second, "203.0.113.7"))
	if len(got) != 1 {
		t.Fatalf("%d sightings", len(got))
	}
	if err := got[0].Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestJunkNeverFatal(t *testing.T) {
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	junk := []string{
		"", "\x00", "\xff\xfe\xfd", strings.Repeat("A", 1<<16),
		"Nov 28 12:00:01 h sshd[1]: Failed password for root from " + strings.Repeat("9", 5000),
		"Nov 28 12:00:01 h sshd[1]: Failed password for root from 203.0.11",
		"Nov 28 12:00:01 h sshd[1]: Invalid user \xff from 203.0.113.7 port 22",
		"Nov 31 12:00:01 h sshd[1]: Invalid user x from 203.0.113.7 port 22",
	}
	feedAll(e, junk...)
	st := e.Stats()
	if st.Lines != uint64(len(junk)) || st.Skipped != 2 || st.Matched != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRuleValidation(t *testing.T) {
	for field, mutate := range map[string]func(*Rule){
		"name":       func(r *Rule) { r.Name = "" },
		"technique":  func(r *Rule) { r.Technique = strings.Repeat("T", 33) },
		"confidence": func(r *Rule) { r.Confidence = 101 },
		"threshold":  func(r *Rule) { r.Threshold = 0 },
		"window":     func(r *Rule) { r.Window = 0 },
		"cooldown":   func(r *Rule) { r.Cooldown = -time.Second },
		"severity":   func(r *Rule) { r.Severity = "urgent" },
	} {
		r := DefaultSSHRule()
		mutate(&r)
		_, err := NewEngine(r, EngineOptions{})
		if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
	if _, err := NewEngine(DefaultSSHRule(), EngineOptions{MaxSources: -1}); err == nil || !strings.Contains(err.Error(), "max_sources") {
		t.Errorf("negative max sources: err = %v", err)
	}
	if _, err := NewEngine(DefaultSSHRule(), EngineOptions{Allow: []netip.Prefix{{}}}); err == nil || !strings.Contains(err.Error(), "allow[0]") {
		t.Errorf("invalid allow prefix: err = %v", err)
	}
}

// TestSightingNotAheadOfClock: lines stamped after the engine's clock (a
// sender's clock or zone off) give a sighting at the clock, which the
// mesh's check against the envelope time accepts, and are counted.
func TestSightingNotAheadOfClock(t *testing.T) {
	now := base
	e := newTestEngine(t, DefaultSSHRule(), EngineOptions{Now: func() time.Time { return now }})
	var got []intel.Sighting
	for i := range 5 {
		got = append(got, feedAll(e, failAt(3*time.Hour+time.Duration(i)*time.Second, "203.0.113.7"))...)
	}
	if len(got) != 1 {
		t.Fatalf("%d sightings, want 1", len(got))
	}
	s := got[0]
	if !s.LastSeen.Equal(now) || s.FirstSeen.After(now) {
		t.Fatalf("first %s last %s, want both at or before the clock %s", s.FirstSeen, s.LastSeen, now)
	}
	if err := intel.CheckSightingAt(s, now, 0); err != nil {
		t.Fatalf("sealed at the clock: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Ahead != 1 {
		t.Fatalf("Ahead %d, want 1", st.Ahead)
	}
	// In the past, times are the lines' own.
	got = feedAll(e, failAt(-time.Hour, "203.0.113.8"), failAt(-time.Hour+time.Second, "203.0.113.8"), failAt(-time.Hour+2*time.Second, "203.0.113.8"),
		failAt(-time.Hour+3*time.Second, "203.0.113.8"), failAt(-time.Hour+4*time.Second, "203.0.113.8"))
	if len(got) != 1 || !got[0].LastSeen.Equal(base.Add(-time.Hour+4*time.Second)) || !got[0].FirstSeen.Equal(base.Add(-time.Hour)) {
		t.Fatalf("past sighting %+v", got)
	}
	if st := e.Stats(); st.Ahead != 1 {
		t.Fatalf("Ahead %d after a past sighting, want 1", st.Ahead)
	}
}
