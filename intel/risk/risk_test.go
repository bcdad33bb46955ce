package risk

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/meshward/meshward/intel"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestWeightsSumTo100(t *testing.T) {
	sum := 0
	for _, w := range weights {
		sum += int(w.weight)
		if Weight(w.name) != int(w.weight) {
			t.Fatalf("Weight(%q) = %d, want %d", w.name, Weight(w.name), w.weight)
		}
	}
	if sum != 100 {
		t.Fatalf("weights sum to %d, want 100", sum)
	}
}

func TestDecay(t *testing.T) {
	for _, c := range []struct {
		age  time.Duration
		want int64
	}{
		{-time.Hour, 1000}, {0, 1000}, {HalfLife, 500}, {2 * HalfLife, 250}, {HalfLife / 2, 750},
		{10 * HalfLife, 0}, {40 * HalfLife, 0},
	} {
		if got := decay(c.age); got != c.want {
			t.Errorf("decay(%s) = %d, want %d", c.age, got, c.want)
		}
	}
}

// TestScoreWorked checks one score worked out by hand from the table in
// the package doc.
func TestScoreWorked(t *testing.T) {
	in := Inputs{
		Now: t0,
		Sightings: []Sighting{
			{Site: "a", Trust: 1000, Severity: intel.SeverityCritical, Confidence: 90, Technique: "T1486", Tactics: []string{"impact"}, Seen: t0.Add(-HalfLife)},
			{Site: "b", Trust: 1000, Severity: intel.SeverityHigh, Confidence: 50, Technique: "T1110", Tactics: []string{"credential-access"}, Seen: t0.Add(-HalfLife)},
		},
		Reports:     []Report{{Source: "feed", Confidence: 80}, {Source: "feed", Confidence: 40}},
		CVEs:        []CVE{{ID: "CVE-2021-44228", CVSS: 10, KEV: true, Ransomware: true}},
		PriorBlocks: 1,
	}
	r := Score(in)
	// corroboration 2/(2+2)=500 -> 12.5; severity critical 1000 -> 15;
	// confidence 1-(0.1*0.5)=950 -> 9.5; reports 800 -> 8; tactic impact
	// 1000 -> 10; cve 150/150 -> 10; recency one half-life 500 -> 7.5;
	// recidivism 500 -> 2.5. Sum 75.
	want := map[string]float64{
		FactorCorroboration: 12.5, FactorSeverity: 15, FactorConfidence: 9.5, FactorReports: 8,
		FactorTactic: 10, FactorCVE: 10, FactorRecency: 7.5, FactorRecidivism: 2.5,
	}
	for name, c := range want {
		f, ok := r.Factor(name)
		if !ok || math.Abs(f.Contribution-c) > 1e-9 {
			t.Errorf("factor %s = %+v, want contribution %v", name, f, c)
		}
	}
	if r.Score != 75 {
		t.Fatalf("score %d, want 75; factors %+v", r.Score, r.Factors)
	}
	if f, _ := r.Factor(FactorTactic); f.Detail != "T1486 (impact)" {
		t.Errorf("tactic detail %q", f.Detail)
	}
	if f, _ := r.Factor(FactorCVE); f.Detail != "CVE-2021-44228 (CVSS 10.0, KEV, ransomware)" {
		t.Errorf("cve detail %q", f.Detail)
	}
}

func TestScoreEmptyIsZero(t *testing.T) {
	if r := Score(Inputs{Now: t0}); r.Score != 0 {
		t.Fatalf("no input scores %d: %+v", r.Score, r.Factors)
	}
}

func TestTacticOrderAndNeutral(t *testing.T) {
	base := func(tactics ...string) int {
		return Score(Inputs{Now: t0, Sightings: []Sighting{{Site: "a", Trust: 1000, Technique: "T1", Tactics: tactics, Seen: t0}}}).Score
	}
	impact, recon, unknown := base("impact"), base("reconnaissance"), base()
	if !(impact > unknown && unknown > recon) {
		t.Fatalf("impact %d, unknown %d, reconnaissance %d: want impact > unknown (neutral) > reconnaissance", impact, unknown, recon)
	}
	// Impact, exfiltration, C2 and credential access weigh more than an
	// unknown tactic, which weighs more than reconnaissance.
	for _, tac := range []string{"exfiltration", "command-and-control", "credential-access"} {
		if s := base(tac); s <= unknown {
			t.Errorf("%s scores %d, not above an unknown tactic (%d)", tac, s, unknown)
		}
	}
	// A distrusted site's tactic counts as neutral.
	distrusted := func(tactics ...string) Factor {
		r := Score(Inputs{Now: t0, Sightings: []Sighting{{Site: "a", Trust: 0, Technique: "T1", Tactics: tactics, Seen: t0}}})
		f, _ := r.Factor(FactorTactic)
		return f
	}
	if d, n := distrusted("impact"), distrusted(); d.Value != n.Value || d.Value != 0.5 {
		t.Errorf("a site of trust 0: impact weighs %v, unknown %v; want both neutral (0.5)", d.Value, n.Value)
	}
}

func TestKEVRaisesRansomwareMore(t *testing.T) {
	s := func(c CVE) int { return Score(Inputs{Now: t0, CVEs: []CVE{c}}).Score }
	plain, kev, ransom := s(CVE{ID: "CVE-1", CVSS: 7.5}), s(CVE{ID: "CVE-1", CVSS: 7.5, KEV: true}), s(CVE{ID: "CVE-1", CVSS: 7.5, KEV: true, Ransomware: true})
	if !(plain < kev && kev < ransom) {
		t.Fatalf("CVSS 7.5: plain %d, KEV %d, ransomware %d: want increasing", plain, kev, ransom)
	}
}

func TestTrustWeighsCorroboration(t *testing.T) {
	mk := func(trust int) int {
		var ss []Sighting
		for i := range 3 {
			ss = append(ss, Sighting{Site: fmt.Sprint(i), Trust: trust, Severity: intel.SeverityHigh, Confidence: 80, Seen: t0})
		}
		return Score(Inputs{Now: t0, Sightings: ss}).Score
	}
	if hi, lo := mk(1000), mk(200); hi <= lo {
		t.Fatalf("three trusted sites score %d, three distrusted %d", hi, lo)
	}
}

func randInputs(r *rand.Rand) Inputs {
	sevs := []intel.Severity{"", intel.SeverityLow, intel.SeverityMedium, intel.SeverityHigh, intel.SeverityCritical}
	tacs := []string{"impact", "reconnaissance", "discovery", "execution", "made-up"}
	in := Inputs{Now: t0, PriorBlocks: r.IntN(4) - 1}
	for i := range r.IntN(8) {
		s := Sighting{Site: fmt.Sprintf("s%d", r.IntN(5)), Trust: r.IntN(1300) - 100, Severity: sevs[r.IntN(len(sevs))],
			Confidence: r.IntN(130) - 10, Technique: fmt.Sprintf("T%d", i), Seen: t0.Add(-time.Duration(r.Int64N(int64(10 * HalfLife))))}
		for range r.IntN(3) {
			s.Tactics = append(s.Tactics, tacs[r.IntN(len(tacs))])
		}
		in.Sightings = append(in.Sightings, s)
	}
	for range r.IntN(4) {
		in.Reports = append(in.Reports, Report{Source: fmt.Sprintf("f%d", r.IntN(3)), Confidence: r.IntN(120)})
	}
	for range r.IntN(3) {
		in.CVEs = append(in.CVEs, CVE{ID: fmt.Sprintf("CVE-2024-%04d", r.IntN(50)), CVSS: r.Float64() * 12, KEV: r.IntN(2) == 0, Ransomware: r.IntN(2) == 0})
	}
	return in
}

// TestScoreProperties: bounded, explained (contributions sum to the
// score), independent of the order of the inputs, never lowered by a new
// site, never raised by age.
func TestScoreProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		in := randInputs(r)
		res := Score(in)
		if res.Score < 0 || res.Score > 100 {
			t.Fatalf("case %d: score %d out of 0..100", i, res.Score)
		}
		var sum float64
		for _, f := range res.Factors {
			if f.Value < 0 || f.Value > 1 || f.Contribution > float64(f.Weight)+1e-9 {
				t.Fatalf("case %d: factor %+v out of bounds", i, f)
			}
			sum += f.Contribution
		}
		if math.Abs(sum-float64(res.Score)) > 0.5+1e-9 {
			t.Fatalf("case %d: contributions sum to %v, score %d", i, sum, res.Score)
		}

		// Order of the inputs does not matter.
		sh := in
		sh.Sightings = append([]Sighting(nil), in.Sightings...)
		sh.Reports = append([]Report(nil), in.Reports...)
		sh.CVEs = append([]CVE(nil), in.CVEs...)
		r.Shuffle(len(sh.Sightings), func(a, b int) { sh.Sightings[a], sh.Sightings[b] = sh.Sightings[b], sh.Sightings[a] })
		r.Shuffle(len(sh.Reports), func(a, b int) { sh.Reports[a], sh.Reports[b] = sh.Reports[b], sh.Reports[a] })
		r.Shuffle(len(sh.CVEs), func(a, b int) { sh.CVEs[a], sh.CVEs[b] = sh.CVEs[b], sh.CVEs[a] })
		if got := Score(sh); !reflect.DeepEqual(got, res) {
			t.Fatalf("case %d: shuffled inputs give %+v, want %+v", i, got, res)
		}

		// A new site never lowers the score.
		more := in
		more.Sightings = append(append([]Sighting(nil), in.Sightings...), Sighting{
			Site: fmt.Sprintf("new%d", i), Trust: r.IntN(1000), Severity: intel.SeverityLow, Confidence: r.IntN(100),
			Technique: "T1595", Tactics: []string{"reconnaissance"}, Seen: t0.Add(-time.Duration(r.Int64N(int64(20 * HalfLife)))),
		})
		if got := Score(more); got.Score < res.Score {
			t.Fatalf("case %d: adding a site lowered the score %d -> %d\nbefore %+v\nafter %+v", i, res.Score, got.Score, res.Factors, got.Factors)
		}
		for _, f := range res.Factors {
			if g, _ := Score(more).Factor(f.Name); g.Value < f.Value {
				t.Fatalf("case %d: adding a site lowered %s %v -> %v", i, f.Name, f.Value, g.Value)
			}
		}

		// Older never raises: Now later, or every sighting earlier.
		later := in
		later.Now = in.Now.Add(time.Duration(r.Int64N(int64(5 * HalfLife))))
		if got := Score(later); got.Score > res.Score {
			t.Fatalf("case %d: a later now raised the score %d -> %d", i, res.Score, got.Score)
		}
		older := in
		older.Sightings = append([]Sighting(nil), in.Sightings...)
		d := time.Duration(r.Int64N(int64(3 * HalfLife)))
		for j := range older.Sightings {
			older.Sightings[j].Seen = older.Sightings[j].Seen.Add(-d)
		}
		if got := Score(older); got.Score > res.Score {
			t.Fatalf("case %d: older sightings raised the score %d -> %d", i, res.Score, got.Score)
		}

		// Lower trust never raises.
		distrust := in
		distrust.Sightings = append([]Sighting(nil), in.Sightings...)
		for j := range distrust.Sightings {
			distrust.Sightings[j].Trust /= 2
		}
		if got := Score(distrust); got.Score > res.Score {
			t.Fatalf("case %d: halving trust raised the score %d -> %d", i, res.Score, got.Score)
		}
	}
}

// BenchmarkScore scores an indicator sighted by 16 sites, with 4 reports
// and 2 CVEs.
func BenchmarkScore(b *testing.B) {
	in := Inputs{Now: t0, PriorBlocks: 1}
	for i := range 16 {
		in.Sightings = append(in.Sightings, Sighting{Site: fmt.Sprintf("site-%02d", i), Trust: 600 + 25*i, Severity: intel.SeverityHigh,
			Confidence: 50 + 3*i, Technique: "T1110.001", Tactics: []string{"credential-access"}, Seen: t0.Add(-time.Duration(i) * time.Minute)})
	}
	for i := range 4 {
		in.Reports = append(in.Reports, Report{Source: fmt.Sprintf("feed-%d", i), Confidence: 40 + 10*i})
	}
	in.CVEs = []CVE{{ID: "CVE-2024-3400", CVSS: 10, KEV: true, Ransomware: true}, {ID: "CVE-2023-0001", CVSS: 6.5}}
	b.ReportAllocs()
	for b.Loop() {
		Score(in)
	}
}
