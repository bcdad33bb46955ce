package node

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/detectors"
	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/attack"
	"github.com/meshward/meshward/intel/kev"
	"github.com/meshward/meshward/intel/risk"
	"github.com/meshward/meshward/store"
)

// riskAPI scores indicators for the admin API (admin.RiskService) from
// what this node holds: the sightings and reports the caller read from
// the store, each site's trust from the FSM, the ATT&CK catalog in force
// (intel.attack_path) for the techniques' tactics, and a mesh-wide block
// in force on the indicator for recidivism. Two nodes holding the same
// sightings, reports, FSM state and catalog give the same score at the
// same time.
type riskAPI struct{ n *Node }

var (
	_ admin.RiskService   = riskAPI{}
	_ admin.AttackService = riskAPI{}
)

// Risk scores ind at now.
func (a riskAPI) Risk(ind intel.Indicator, sightings []store.SightingRecord, reports []store.ReportRecord, now time.Time) risk.Result {
	cons := a.n.deps.Consensus
	origins := make([]string, 0, 8)
	for _, r := range sightings {
		origins = append(origins, r.Origin)
	}
	slices.Sort(origins)
	trust, _ := cons.SiteTrustAt(slices.Compact(origins))
	// Recidivism: the automatic blocks of it the mesh applied (the FSM's
	// history), or 1 for a block in force the history does not hold
	// (an operator's, a feed's).
	prior := cons.AutomaticBlocks(ind)
	if _, ok := cons.Policy(intel.PolicyID(intel.ActionBlock, ind), now); ok && prior == 0 {
		prior = 1
	}
	var nvd *kev.NVD
	var kevs *kev.Catalog
	if c := a.n.deps.cves; c != nil {
		nvd, kevs = c.nvd, c.kev
	}
	in := riskInputs(sightings, reports, now, trust, a.n.deps.attack.get(), nvd, kevs, prior)
	addRuleCVEs(&in, sightings, a.n.deps.Detectors.rules(), nvd, kevs)
	return risk.Score(in)
}

// cveData are the KEV catalog and the NVD records the risk score ranks
// CVEs by; either may be nil.
type cveData struct {
	kev *kev.Catalog
	nvd *kev.NVD
}

// loadCVEData reads intel.kev_path and intel.nvd_path; nil when neither
// is set. An error names the field.
func loadCVEData(c IntelConfig, log *slog.Logger) (*cveData, error) {
	if c.KEVPath == "" && c.NVDPath == "" {
		return nil, nil
	}
	d := &cveData{}
	if c.KEVPath != "" {
		k, err := kev.Load(c.KEVPath)
		if err != nil {
			return nil, fmt.Errorf("intel.kev_path: %w", err)
		}
		d.kev = k
		log.Info("KEV catalog loaded", "file", k.Name, "vulnerabilities", k.Len())
	}
	if c.NVDPath != "" {
		n := kev.NewNVD()
		load := n.LoadFile
		if fi, err := os.Stat(c.NVDPath); err == nil && fi.IsDir() {
			load = n.LoadDir
		}
		if err := load(c.NVDPath); err != nil {
			return nil, fmt.Errorf("intel.nvd_path: %w", err)
		}
		d.nvd = n
		log.Info("NVD records loaded", "path", c.NVDPath, "cves", n.Len())
	}
	return d, nil
}

// maxRiskCVEs bounds the CVEs one indicator's reports may link.
const maxRiskCVEs = 16

var cvePattern = regexp.MustCompile(`CVE-\d{4}-\d{4,19}`)

// riskInputs builds the score's inputs. trust is each origin's trust
// (missing: full); catalog, nvd and kevs may be nil. Only the reports
// active at now count; the CVEs are those named in their labels or
// descriptions (at most maxRiskCVEs, in order), ranked by intel/kev.
func riskInputs(sightings []store.SightingRecord, reports []store.ReportRecord, now time.Time, trust map[string]int,
	catalog *attack.Catalog, nvd *kev.NVD, kevs *kev.Catalog, prior int) risk.Inputs {
	in := risk.Inputs{Now: now, PriorBlocks: prior, Sightings: make([]risk.Sighting, 0, len(sightings))}
	for _, r := range sightings {
		t, ok := trust[r.Origin]
		if !ok {
			t = risk.MaxTrust
		}
		s := risk.Sighting{Site: r.Origin, Trust: t, Severity: r.Sighting.Severity, Confidence: r.Sighting.Confidence,
			Technique: r.Sighting.Technique, Seen: r.Sighting.LastSeen}
		if catalog != nil && s.Technique != "" {
			if tech, ok := catalog.Technique(s.Technique); ok {
				s.Tactics = tech.Tactics
			}
		}
		in.Sightings = append(in.Sightings, s)
	}
	var cves []string
	for _, r := range reports {
		if !r.Report.ActiveAt(now) {
			continue
		}
		in.Reports = append(in.Reports, risk.Report{Source: r.Report.Source, Confidence: r.Report.Confidence})
		texts := append(slices.Clone(r.Report.Labels), r.Report.Description)
		for _, text := range texts {
			for _, id := range cvePattern.FindAllString(text, maxRiskCVEs) {
				if len(cves) < maxRiskCVEs && !slices.Contains(cves, id) {
					cves = append(cves, id)
				}
			}
		}
	}
	for _, id := range cves {
		p := kev.Rank(id, nvd, kevs)
		in.CVEs = append(in.CVEs, risk.CVE{ID: id, CVSS: p.CVSS, KEV: p.KEV, Ransomware: p.Ransomware})
	}
	return in
}

// addRuleCVEs adds to in the CVEs of the rules in force that made the
// sightings (exploit-attempt rules name the vulnerabilities they see
// exploited), up to maxRiskCVEs in all. A sighting from another node
// counts by its detector's name: the mesh runs one rule pack.
func addRuleCVEs(in *risk.Inputs, sightings []store.SightingRecord, rules []detectors.Rule, nvd *kev.NVD, kevs *kev.Catalog) {
	for _, r := range sightings {
		for _, rule := range rules {
			if rule.Name != r.Sighting.Detector {
				continue
			}
			for _, id := range rule.CVEs {
				if len(in.CVEs) >= maxRiskCVEs || slices.ContainsFunc(in.CVEs, func(c risk.CVE) bool { return c.ID == id }) {
					continue
				}
				p := kev.Rank(id, nvd, kevs)
				in.CVEs = append(in.CVEs, risk.CVE{ID: id, CVSS: p.CVSS, KEV: p.KEV, Ransomware: p.Ransomware})
			}
		}
	}
}

// AttackTechnique looks a technique up in the catalog in force
// (admin.AttackService), with its tactics' names when the catalog holds
// them and its sub-techniques.
func (a riskAPI) AttackTechnique(id string) (admin.AttackTechnique, bool, bool) {
	cat := a.n.deps.attack.get()
	if cat == nil {
		return admin.AttackTechnique{}, false, false
	}
	t, ok := cat.Technique(id)
	if !ok {
		return admin.AttackTechnique{}, false, true
	}
	out := admin.AttackTechnique{ID: t.ID, Name: t.Name, Parent: t.Parent, URL: t.URL, Tactics: []admin.AttackTactic{},
		Subtechniques: cat.Subtechniques(t.ID)}
	for _, short := range t.Tactics {
		at := admin.AttackTactic{ShortName: short}
		if tac, ok := cat.Tactic(short); ok {
			at.ID, at.Name = tac.ID, tac.Name
		}
		out.Tactics = append(out.Tactics, at)
	}
	return out, true, true
}
