package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/attack"
	"github.com/meshward/meshward/intel/risk"
	"github.com/meshward/meshward/internal/testenv"
	"github.com/meshward/meshward/store"
)

// riskInputs takes each origin's trust, the catalog's tactics, the
// active reports only, the CVEs they name (bounded) ranked by KEV.
func TestRiskInputs(t *testing.T) {
	cat, err := attack.Load(testenv.SharedData(t, "attack"))
	if err != nil {
		t.Fatal(err)
	}
	kevs, err := loadCVEData(IntelConfig{KEVPath: testenv.SharedData(t, "kev")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.9"))
	sight := func(origin, tech string) store.SightingRecord {
		return store.SightingRecord{Origin: origin, Sighting: intel.Sighting{Indicator: ind, Detector: "d", Technique: tech,
			Severity: intel.SeverityHigh, Confidence: 70, Count: 1, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Minute)}}
	}
	var many []string
	for i := range 20 {
		many = append(many, fmt.Sprintf("CVE-2020-%04d", 1000+i))
	}
	reports := []store.ReportRecord{
		{Report: intel.IndicatorReport{Indicator: ind, Source: "feed:a", Confidence: 80, Labels: []string{"CVE-2024-3400"},
			Description: "also CVE-2024-3400 again", ValidFrom: now.Add(-time.Hour)}},
		{Report: intel.IndicatorReport{Indicator: ind, Source: "feed:old", Confidence: 100, Labels: []string{"CVE-2021-44228"},
			ValidFrom: now.Add(-48 * time.Hour), ValidUntil: now.Add(-24 * time.Hour)}},
		{Report: intel.IndicatorReport{Indicator: ind, Source: "feed:b", Confidence: 10, Description: strings.Join(many, " "), ValidFrom: now.Add(-time.Hour)}},
	}
	recs := []store.SightingRecord{sight("a", "T1110.001"), sight("b", "T9999")}
	in := riskInputs(recs, reports, now, map[string]int{"a": 600}, cat, kevs.nvd, kevs.kev, 1)

	if in.Sightings[0].Trust != 600 || in.Sightings[1].Trust != risk.MaxTrust {
		t.Errorf("trust %d and %d, want 600 and full for an origin the FSM does not list", in.Sightings[0].Trust, in.Sightings[1].Trust)
	}
	if !slices.Contains(in.Sightings[0].Tactics, "credential-access") || in.Sightings[1].Tactics != nil {
		t.Errorf("tactics %v and %v: want credential-access for T1110.001, none for an unknown technique", in.Sightings[0].Tactics, in.Sightings[1].Tactics)
	}
	if len(in.Reports) != 2 {
		t.Errorf("%d reports, want the 2 active ones: %+v", len(in.Reports), in.Reports)
	}
	if len(in.CVEs) != maxRiskCVEs || in.CVEs[0].ID != "CVE-2024-3400" || !in.CVEs[0].KEV || !in.CVEs[0].Ransomware {
		t.Errorf("CVEs %+v: want %d, the first CVE-2024-3400 in KEV with ransomware use", in.CVEs, maxRiskCVEs)
	}
	for _, c := range in.CVEs {
		if c.ID == "CVE-2021-44228" {
			t.Errorf("the CVE of an expired report counted")
		}
	}
	if in.PriorBlocks != 1 || !in.Now.Equal(now) {
		t.Errorf("prior %d at %s", in.PriorBlocks, in.Now)
	}
	// KEV raises the score over the same inputs without it.
	without := riskInputs(recs, reports, now, map[string]int{"a": 600}, cat, nil, nil, 1)
	if with, wo := risk.Score(in), risk.Score(without); with.Score <= wo.Score {
		t.Errorf("with KEV %d, without %d: want KEV to raise it", with.Score, wo.Score)
	}
}

// A KEV or NVD path that does not load fails with the field named.
func TestLoadCVEDataNamesTheField(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := loadCVEData(IntelConfig{KEVPath: bad}, log); err == nil || !strings.Contains(err.Error(), "intel.kev_path") {
		t.Errorf("bad KEV: %v", err)
	}
	if _, err := loadCVEData(IntelConfig{NVDPath: bad}, log); err == nil || !strings.Contains(err.Error(), "intel.nvd_path") {
		t.Errorf("bad NVD: %v", err)
	}
	if d, err := loadCVEData(IntelConfig{}, log); d != nil || err != nil {
		t.Errorf("nothing configured: %v, %v", d, err)
	}
	if err := (IntelConfig{KEVPath: filepath.Join(t.TempDir(), "missing")}).Validate(); err == nil || !strings.Contains(err.Error(), "kev_path") {
		t.Errorf("a missing kev_path validated: %v", err)
	}
}

// The CVEs of an exploit-attempt rule weigh in the risk of the
// indicators it reports: a Log4Shell attempt (in KEV) scores above the
// same sighting from a rule that names no CVE.
func TestRiskCountsRuleCVEs(t *testing.T) {
	kevs, err := loadCVEData(IntelConfig{KEVPath: filepath.Join(testenv.SharedData(t, "kev"), "known_exploited_vulnerabilities.json")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ind := intel.IndicatorFromAddr(netip.MustParseAddr("203.0.113.90"))
	rec := func(detector string) []store.SightingRecord {
		return []store.SightingRecord{{Origin: "a", Sighting: intel.Sighting{Indicator: ind, Detector: detector, Technique: "T1190",
			Severity: intel.SeverityHigh, Confidence: 85, Count: 1, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-time.Minute)}}}
	}
	rules := detectors.BuiltinRules().Rules()
	with := riskInputs(rec("web-log4shell"), nil, now, nil, nil, kevs.nvd, kevs.kev, 0)
	addRuleCVEs(&with, rec("web-log4shell"), rules, kevs.nvd, kevs.kev)
	if len(with.CVEs) != 2 || with.CVEs[0].ID != "CVE-2021-44228" || !with.CVEs[0].KEV {
		t.Fatalf("CVEs %+v, want Log4Shell's two, in KEV", with.CVEs)
	}
	without := riskInputs(rec("web-path-scan"), nil, now, nil, nil, kevs.nvd, kevs.kev, 0)
	addRuleCVEs(&without, rec("web-path-scan"), rules, kevs.nvd, kevs.kev)
	if len(without.CVEs) != 0 {
		t.Fatalf("a rule without CVEs linked %+v", without.CVEs)
	}
	if w, wo := risk.Score(with).Score, risk.Score(without).Score; w <= wo {
		t.Errorf("score %d with the rule's KEV CVEs, %d without: want higher", w, wo)
	}
}
