package detectors

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

func newPartialEngine(t testing.TB, opts EngineOptions) *Engine {
	t.Helper()
	if opts.Partial == nil {
		opts.Partial = &PartialOptions{}
	}
	return newTestEngine(t, DefaultSSHRule(), opts)
}

func partialsByValue(ps []intel.Sighting) map[string]intel.Sighting {
	out := map[string]intel.Sighting{}
	for _, p := range ps {
		out[p.Indicator.Value] = p
	}
	return out
}

// Sources under the threshold are summarised with their count and times;
// a source whose rule fired is not (the sighting reported it); a second
// call reports only what came after the first.
func TestPartialsSubThresholdOnly(t *testing.T) {
	const a, b, c = "203.0.113.7", "203.0.113.8", "203.0.113.9"
	e := newPartialEngine(t, EngineOptions{})
	lines := []string{failAt(0, a), failAt(5*time.Second, a), failAt(6*time.Second, b)}
	for i := range 6 {
		lines = append(lines, failAt(time.Duration(i)*time.Second, c))
	}
	full := feedAll(e, lines...)
	if len(full) != 1 || full[0].Indicator.Value != c || full[0].Partial {
		t.Fatalf("sightings %+v, want one full sighting of %s", full, c)
	}
	got := partialsByValue(e.TakePartials())
	if len(got) != 2 {
		t.Fatalf("partials %+v, want %s and %s only", got, a, b)
	}
	pa := got[a]
	if !pa.Partial || pa.Count != 2 || pa.Detector != "ssh-bruteforce" || pa.Technique != "T1110.001" ||
		!pa.FirstSeen.Equal(base) || !pa.LastSeen.Equal(base.Add(5*time.Second)) {
		t.Fatalf("partial of %s: %+v", a, pa)
	}
	if got[b].Count != 1 {
		t.Fatalf("partial of %s: %+v", b, got[b])
	}
	if _, ok := got[c]; ok {
		t.Fatalf("%s fired but was also summarised", c)
	}
	if again := e.TakePartials(); len(again) != 0 {
		t.Fatalf("second call returned %+v, want nothing new", again)
	}
	// c cooling down after its sighting: its events are the detection's,
	// not a summary's; a's new event is.
	feedAll(e, failAt(10*time.Second, c), failAt(11*time.Second, a))
	got = partialsByValue(e.TakePartials())
	if len(got) != 1 || got[a].Count != 1 || !got[a].FirstSeen.Equal(base.Add(11*time.Second)) {
		t.Fatalf("after the first call: %+v, want %s with 1 event", got, a)
	}
	st := e.Stats().Partial
	if st.Emitted != 3 || st.Events != 9 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// One call returns at most TopN, most events first; the rest is counted
// and forgotten. Groups evicted with a count are counted lost.
func TestPartialsBounded(t *testing.T) {
	e := newPartialEngine(t, EngineOptions{Partial: &PartialOptions{TopN: 2}})
	var lines []string
	for i, addr := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		for j := range i + 1 {
			lines = append(lines, failAt(time.Duration(j)*time.Second, addr))
		}
	}
	feedAll(e, lines...)
	got := e.TakePartials()
	if len(got) != 2 || got[0].Indicator.Value != "198.51.100.3" || got[0].Count != 3 || got[1].Count != 2 {
		t.Fatalf("partials %+v, want .3 (3) then .2 (2)", got)
	}
	if st := e.Stats().Partial; st.Dropped != 1 {
		t.Fatalf("dropped %d, want 1", st.Dropped)
	}
	if again := e.TakePartials(); len(again) != 0 {
		t.Fatalf("the dropped source came back: %+v", again)
	}

	small := newPartialEngine(t, EngineOptions{MaxSources: 1})
	feedAll(small, failAt(0, "198.51.100.1"), failAt(time.Second, "198.51.100.2"))
	if st := small.Stats().Partial; st.Lost != 1 {
		t.Fatalf("lost %d, want 1 (the evicted group had an event not summarised)", st.Lost)
	}
	if got := small.TakePartials(); len(got) != 1 || got[0].Indicator.Value != "198.51.100.2" {
		t.Fatalf("partials %+v, want the group kept", got)
	}
}

// Without PartialOptions nothing is counted; by default the brute-force
// window rules take part and the others do not; unknown names and bad
// bounds are refused.
func TestPartialOptions(t *testing.T) {
	off := newTestEngine(t, DefaultSSHRule(), EngineOptions{})
	feedAll(off, failAt(0, "203.0.113.7"))
	if got := off.TakePartials(); got != nil || off.Stats().Partial.Events != 0 {
		t.Fatalf("summaries off, got %+v", got)
	}
	e, err := NewRulesEngine(BuiltinRules(), EngineOptions{Now: fixedNow, Partial: &PartialOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	rules := e.PartialRules()
	for _, want := range []string{"ssh-bruteforce", "pam-bruteforce"} {
		if !slices.Contains(rules, want) {
			t.Errorf("default partial rules %v lack %s", rules, want)
		}
	}
	for _, not := range []string{"ssh-slow-bruteforce", "ssh-user-enum", "web-path-scan"} {
		if slices.Contains(rules, not) {
			t.Errorf("default partial rules %v hold %s", rules, not)
		}
	}
	if _, err := NewRulesEngine(BuiltinRules(), EngineOptions{Partial: &PartialOptions{Rules: []string{"ssh-bruteforce", "nope"}}}); err == nil ||
		!strings.Contains(err.Error(), `partial rules[1]: no rule "nope"`) {
		t.Fatalf("unknown rule: %v", err)
	}
	if _, err := NewRulesEngine(BuiltinRules(), EngineOptions{Partial: &PartialOptions{TopN: -1}}); err == nil ||
		!strings.Contains(err.Error(), "partial top_n -1") {
		t.Fatalf("bad top_n: %v", err)
	}
}

// BenchmarkPartials measures one TakePartials call over n sub-threshold
// sources (two failures each) and the JSON size of a summary.
func BenchmarkPartials(b *testing.B) {
	const n = 10000
	lines := make([][]byte, 0, 2*n)
	for i := range n {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		lines = append(lines, []byte(failAt(0, addr)), []byte(failAt(time.Second, addr)))
	}
	emit := func(intel.Sighting) {}
	var size int
	for range b.N {
		b.StopTimer()
		e := newPartialEngine(b, EngineOptions{Partial: &PartialOptions{TopN: n}})
		for _, l := range lines {
			e.Process(l, emit)
		}
		b.StartTimer()
		got := e.TakePartials()
		if len(got) != n {
			b.Fatalf("%d partials, want %d", len(got), n)
		}
		if size == 0 {
			js, _ := json.Marshal(got[0])
			size = len(js)
		}
	}
	b.ReportMetric(float64(size), "json-bytes/summary")
}
