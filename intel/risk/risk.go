// Package risk scores an indicator from 0 to 100 and explains the score.
//
// Score is a pure function of its Inputs: no clock (Now is an input), no
// I/O, no state. Every step is integer arithmetic (values in thousandths),
// so two nodes on any architecture that hold the same inputs reach the
// same score and the same factors to the last digit: the FSM can check a
// threshold with it while replaying the log (consensus Rules.MinRisk).
//
// The score is the sum of eight factors. Each factor has a value in
// 0..1000 (thousandths of its weight) and a weight in points; the weights
// sum to 100, so the score is bounded by construction:
//
//	factor         weight  value (0..1000)
//	corroboration    25    T/(T+2) where T is the sum, over the distinct sites
//	                       that sighted the indicator, of each site's trust
//	                       (0..1): one fully trusted site 333, two 500,
//	                       four 667, eight 800
//	severity         15    the highest rule severity of a sighting (low 250,
//	                       medium 500, high 750, critical 1000), times the
//	                       trust of the site that reported it
//	confidence       10    noisy-OR over the sites of (the site's highest
//	                       detection confidence x its trust): 1 - prod(1 - c*t)
//	reports          10    noisy-OR of the feed/operator report confidences,
//	                       the highest per source
//	tactic           10    the heaviest ATT&CK tactic among the sightings'
//	                       techniques (TacticWeight), pulled towards neutral
//	                       (500) by the reporting site's distrust; a technique
//	                       the catalog does not know, or no catalog, is neutral
//	cve              10    the highest CVE priority: (CVSS base + 3 if in KEV
//	                       + 2 more if KEV knows ransomware use) / 15
//	recency          15    2^(-age/HalfLife), age from the latest sighting's
//	                       last_seen to Now (piecewise linear between
//	                       half-lives; 0 with no sighting)
//	recidivism        5    1 - 2^-n for n blocks before (500, 750, ...)
//
// Why these weights: independent sites seeing the same thing (weighted by
// how often they were right before) is the strongest evidence the mesh
// has, so it weighs most; what the detection rules say (severity,
// confidence) comes next; fresh activity matters as much as severity
// because the mesh blocks what is attacking now; outside intelligence
// (reports, CVE/KEV) and the ATT&CK tactic refine the score but cannot
// make it on their own; a repeat offender earns a little more.
//
// Monotonicity: adding a sighting from a new site never lowers the score
// (every sighting factor is a max, a noisy-OR or an increasing function
// of a sum, and the latest sighting can only become later); moving the
// sightings earlier, or Now later, never raises it.
package risk

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
)

// HalfLife is the recency factor's half-life: a sighting a day old weighs
// half as much as a fresh one.
const HalfLife = 24 * time.Hour

// MaxTrust is the trust of a fully trusted site (Sighting.Trust).
const MaxTrust = 1000

// Factor names, in the order Result.Factors lists them.
const (
	FactorCorroboration = "corroboration"
	FactorSeverity      = "severity"
	FactorConfidence    = "confidence"
	FactorReports       = "reports"
	FactorTactic        = "tactic"
	FactorCVE           = "cve"
	FactorRecency       = "recency"
	FactorRecidivism    = "recidivism"
)

// Weights are the factors' weights in points; they sum to 100.
var weights = [...]struct {
	name   string
	weight int64
}{
	{FactorCorroboration, 25},
	{FactorSeverity, 15},
	{FactorConfidence, 10},
	{FactorReports, 10},
	{FactorTactic, 10},
	{FactorCVE, 10},
	{FactorRecency, 15},
	{FactorRecidivism, 5},
}

// Weight returns a factor's weight in points (0 for an unknown name).
func Weight(name string) int {
	for _, w := range weights {
		if w.name == name {
			return int(w.weight)
		}
	}
	return 0
}

// Sighting is what the score takes of one signed sighting.
type Sighting struct {
	Site       string         // the signer's node ID
	Trust      int            // the site's trust, 0..MaxTrust (clamped)
	Severity   intel.Severity // "" counts as nothing
	Confidence int            // 0..100 (clamped)
	Technique  string         // ATT&CK ID, "" for none
	// Tactics are the technique's tactics (short names such as
	// "credential-access") from the ATT&CK catalog; nil when the
	// technique or the catalog is unknown: neutral.
	Tactics []string
	Seen    time.Time // the sighting's last_seen
}

// Report is what the score takes of one indicator report.
type Report struct {
	Source     string // feed name or "operator:<name>"
	Confidence int    // 0..100 (clamped)
}

// CVE is a CVE linked to the indicator, ranked as intel/kev ranks it.
type CVE struct {
	ID         string
	CVSS       float64 // base score 0..10 (clamped); kev.UnscoredBase when unscored
	KEV        bool
	Ransomware bool
}

// Inputs are everything the score depends on.
type Inputs struct {
	Now         time.Time
	Sightings   []Sighting
	Reports     []Report
	CVEs        []CVE
	PriorBlocks int // blocks of this indicator before
}

// Factor is one term of the score: its raw value (Value, 0..1 as the
// fraction of its weight earned), its Weight in points, and what it adds
// (Contribution = Value x Weight, in points). Detail says where the value
// came from.
type Factor struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Weight       int     `json:"weight"`
	Contribution float64 `json:"contribution"`
	Detail       string  `json:"detail"`
}

// Result is a score and its explanation: the factors' contributions sum
// to Score before rounding.
type Result struct {
	Score   int       `json:"score"` // 0..100
	Factors []Factor  `json:"factors"`
	At      time.Time `json:"at"` // Inputs.Now
}

// Factor returns the factor with this name.
func (r Result) Factor(name string) (Factor, bool) {
	for _, f := range r.Factors {
		if f.Name == name {
			return f, true
		}
	}
	return Factor{}, false
}

// TacticWeight is the weight in 0..1000 of an ATT&CK tactic (short name):
// what does most harm when it succeeds weighs most. A tactic not listed
// is neutral (500).
func TacticWeight(tactic string) int64 {
	switch tactic {
	case "impact", "exfiltration":
		return 1000
	case "command-and-control", "credential-access":
		return 900
	case "lateral-movement", "privilege-escalation", "defense-evasion":
		return 800
	case "initial-access", "execution", "persistence", "collection":
		return 700
	case "discovery":
		return 400
	case "resource-development":
		return 300
	case "reconnaissance":
		return 200
	}
	return neutral
}

const (
	full    = 1000 // a factor's value at its maximum
	neutral = 500
)

func clamp(v, lo, hi int64) int64 { return max(lo, min(hi, v)) }

func severityValue(s intel.Severity) int64 {
	switch s {
	case intel.SeverityLow:
		return 250
	case intel.SeverityMedium:
		return 500
	case intel.SeverityHigh:
		return 750
	case intel.SeverityCritical:
		return 1000
	}
	return 0
}

// decay is 2^(-age/HalfLife) in thousandths: exact at whole half-lives,
// linear between them, 0 past 40 half-lives. A negative age is 0.
func decay(age time.Duration) int64 {
	if age <= 0 {
		return full
	}
	n := int64(age / HalfLife)
	if n >= 40 {
		return 0
	}
	const one = int64(1) << 40 // (one/2) * seconds of a half-life fits in 63 bits
	hi := one >> n
	frac := int64((age % HalfLife) / time.Second)
	per := int64(HalfLife / time.Second)
	v := hi - (hi/2)*frac/per
	return v * full / one
}

// Score computes the risk of an indicator from in. It does not modify in.
func Score(in Inputs) Result {
	vals := map[string]int64{}
	details := map[string]string{}

	// Per site: trust, the highest confidence; over all sightings: the
	// strongest severity and tactic, and the latest sighting.
	type site struct {
		trust, conf int64
	}
	sites := map[string]*site{}
	var sevBest int64
	sevWhat := "none"
	tacBest, tacWhat := int64(-1), ""
	var latest time.Time
	for _, s := range in.Sightings {
		t := clamp(int64(s.Trust), 0, MaxTrust)
		st := sites[s.Site]
		if st == nil {
			st = &site{trust: t}
			sites[s.Site] = st
		}
		// A site's trust is the lowest any of its sightings claims: the
		// inputs should agree, and the lowest is the safe choice.
		st.trust = min(st.trust, t)
		st.conf = max(st.conf, clamp(int64(s.Confidence), 0, 100)*10)
		// Ties are broken by name, so that the explanation does not
		// depend on the order of the sightings.
		if v := severityValue(s.Severity) * t / MaxTrust; v > 0 && (v > sevBest || (v == sevBest && string(s.Severity) < sevWhat)) {
			sevBest, sevWhat = v, string(s.Severity)
		}
		tw, tname := tacticOf(s)
		// Distrust pulls the tactic towards neutral.
		tw = neutral + (tw-neutral)*t/MaxTrust
		if tw > tacBest || (tw == tacBest && tname < tacWhat) {
			tacBest, tacWhat = tw, tname
		}
		if s.Seen.After(latest) {
			latest = s.Seen
		}
	}

	// Corroboration: T/(T+2) with T the sum of the sites' trust.
	var sum int64
	miss := int64(full) // confidence noisy-OR: product of (1 - c*t)
	for _, st := range sites {
		sum += st.trust
	}
	// The product is taken in site order so that rounding is the same
	// whatever order the sightings came in.
	for _, id := range slices.Sorted(maps.Keys(sites)) {
		st := sites[id]
		miss = miss * (full - st.conf*st.trust/MaxTrust) / full
	}
	vals[FactorCorroboration] = full * sum / (sum + 2*MaxTrust)
	details[FactorCorroboration] = fmt.Sprintf("%s, trust sum %s", plural(len(sites), "site"), thousandths(sum))
	vals[FactorSeverity] = sevBest
	details[FactorSeverity] = "highest: " + sevWhat
	if len(sites) == 0 {
		miss = full
	}
	vals[FactorConfidence] = full - miss
	details[FactorConfidence] = plural(len(sites), "site") + ", trust-weighted"
	if tacBest < 0 {
		tacBest, tacWhat = 0, "no sighting"
	}
	vals[FactorTactic] = tacBest
	details[FactorTactic] = tacWhat

	// Reports: noisy-OR of the highest confidence per source.
	bySource := map[string]int64{}
	for _, r := range in.Reports {
		bySource[r.Source] = max(bySource[r.Source], clamp(int64(r.Confidence), 0, 100)*10)
	}
	rmiss := int64(full)
	for _, src := range slices.Sorted(maps.Keys(bySource)) {
		rmiss = rmiss * (full - bySource[src]) / full
	}
	vals[FactorReports] = full - rmiss
	details[FactorReports] = plural(len(bySource), "source")

	// CVE: the highest priority over 15.
	var cveBest int64
	cveWhat := "none"
	for _, c := range in.CVEs {
		p := clamp(int64(c.CVSS*10+0.5), 0, 100) // tenths of a point
		tags := []string{fmt.Sprintf("CVSS %.1f", float64(p)/10)}
		if c.KEV {
			p += 30
			tags = append(tags, "KEV")
			if c.Ransomware {
				p += 20
				tags = append(tags, "ransomware")
			}
		}
		v := p * full / 150
		if v > cveBest || (v == cveBest && cveWhat != "none" && c.ID < strings.Fields(cveWhat)[0]) {
			cveBest, cveWhat = v, c.ID+" ("+strings.Join(tags, ", ")+")"
		}
	}
	vals[FactorCVE] = cveBest
	details[FactorCVE] = cveWhat

	// Recency.
	if latest.IsZero() {
		vals[FactorRecency], details[FactorRecency] = 0, "no sighting"
	} else {
		age := in.Now.Sub(latest)
		vals[FactorRecency] = decay(age)
		details[FactorRecency] = fmt.Sprintf("latest sighting %s before, half-life %s", max(age, 0).Round(time.Second), HalfLife)
	}

	// Recidivism: 1 - 2^-n.
	n := clamp(int64(in.PriorBlocks), 0, 40)
	vals[FactorRecidivism] = full - full>>n
	details[FactorRecidivism] = plural(int(n), "block") + " before"

	res := Result{At: in.Now, Factors: make([]Factor, 0, len(weights))}
	var total int64 // in thousandths of a point
	for _, w := range weights {
		v := clamp(vals[w.name], 0, full)
		c := v * w.weight
		total += c
		res.Factors = append(res.Factors, Factor{Name: w.name, Value: float64(v) / full, Weight: int(w.weight),
			Contribution: float64(c) / full, Detail: details[w.name]})
	}
	res.Score = int(clamp((total+full/2)/full, 0, 100))
	return res
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func thousandths(v int64) string { return fmt.Sprintf("%d.%03d", v/1000, v%1000) }

// tacticOf is the weight of a sighting's heaviest tactic and its name;
// neutral when the sighting names no technique or its tactics are
// unknown.
func tacticOf(s Sighting) (int64, string) {
	if len(s.Tactics) == 0 {
		if s.Technique == "" {
			return neutral, "no technique"
		}
		return neutral, s.Technique + " (tactic unknown)"
	}
	best, name := int64(-1), ""
	for _, tac := range s.Tactics {
		if w := TacticWeight(tac); w > best || (w == best && tac < name) {
			best, name = w, tac
		}
	}
	return best, s.Technique + " (" + name + ")"
}
