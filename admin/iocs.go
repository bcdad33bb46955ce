package admin

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/intel/risk"
	"github.com/meshward/meshward/store"
)

// RiskService scores indicators (intel/risk). It is optional: a Node
// that does not implement it shows no risk, and sort=risk is refused.
type RiskService interface {
	// Risk scores ind at now from its sightings and reports as the
	// caller read them, with what the node holds besides (site trust,
	// the ATT&CK catalog, the policies in force).
	Risk(ind intel.Indicator, sightings []store.SightingRecord, reports []store.ReportRecord, now time.Time) risk.Result
}

// reasonBadQuery counts a query parameter of the indicator routes that
// does not parse (sort, at).
const reasonBadQuery = "bad_query"

// riskService is the node's RiskService, or nil.
func (s *Server) riskService() RiskService {
	rs, _ := s.opts.Node.(RiskService)
	return rs
}

// riskAt reads the at parameter (RFC 3339), the time risk is computed
// at: the server's clock when absent. Every node asked with the same at
// and holding the same data gives the same score.
func (s *Server) riskAt(c *call) (time.Time, error) {
	v := c.r.URL.Query().Get("at")
	if v == "" {
		return s.now(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, rejected(reasonBadQuery, fmt.Errorf("%w: at %q: want an RFC 3339 time", ErrInvalid, v))
	}
	return t, nil
}

// policyTags lists the policies in force on exactly ind, as
// "scope:action".
func policyTags(x *policyIndex, ind intel.Indicator) []string {
	var out []string
	for _, p := range x.on(ind) {
		out = append(out, p.Scope+":"+string(p.Action))
	}
	return out
}

// summarize folds sightings into one IOC per indicator.
func summarize(recs []store.SightingRecord, x *policyIndex) []IOC {
	return summarizeGrouped(recs, x, nil)
}

// summarizeGrouped is summarize; when groups is not nil it also receives
// each indicator's records, by key.
func summarizeGrouped(recs []store.SightingRecord, x *policyIndex, groups map[string][]store.SightingRecord) []IOC {
	type acc struct {
		ioc       IOC
		origins   map[string]bool
		detectors map[string]bool
	}
	m := make(map[string]*acc)
	var order []string
	for _, r := range recs {
		k := r.Sighting.Indicator.Key()
		a, ok := m[k]
		if !ok {
			a = &acc{ioc: IOC{Indicator: r.Sighting.Indicator}, origins: map[string]bool{}, detectors: map[string]bool{}}
			m[k] = a
			order = append(order, k)
		}
		a.ioc.Sightings++
		if groups != nil {
			groups[k] = append(groups[k], r)
		}
		a.origins[r.Origin] = true
		if d := r.Sighting.Detector; d != "" {
			a.detectors[d] = true
		}
		if fs := r.Sighting.FirstSeen; a.ioc.FirstSeen.IsZero() || fs.Before(a.ioc.FirstSeen) {
			a.ioc.FirstSeen = fs
		}
		if ls := r.Sighting.LastSeen; ls.After(a.ioc.LastSeen) {
			a.ioc.LastSeen = ls
		}
	}
	out := make([]IOC, 0, len(order))
	for _, k := range order {
		a := m[k]
		a.ioc.Origins = len(a.origins)
		for d := range a.detectors {
			a.ioc.Detectors = append(a.ioc.Detectors, d)
		}
		sort.Strings(a.ioc.Detectors)
		a.ioc.Policies = policyTags(x, a.ioc.Indicator)
		out = append(out, a.ioc)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].Indicator.Key() < out[j].Indicator.Key()
	})
	return out
}

func getIOCs(s *Server, c *call) (any, error) {
	n, err := limit(c)
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	text := strings.ToLower(strings.TrimSpace(q.Get("q")))
	typ := intel.IndicatorType(strings.ToLower(q.Get("type")))
	if typ != "" {
		if _, err := intel.NewIndicator(typ, "x"); err != nil && strings.Contains(err.Error(), "unknown type") {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	sortBy := q.Get("sort")
	switch sortBy {
	case "", "last_seen", "risk":
	default:
		return nil, rejected(reasonBadQuery, fmt.Errorf("%w: sort %q: want last_seen or risk", ErrInvalid, sortBy))
	}
	rs := s.riskService()
	if sortBy == "risk" && rs == nil {
		return nil, rejected(reasonBadQuery, fmt.Errorf("%w: sort risk: this node does not score indicators", ErrInvalid))
	}
	at, err := s.riskAt(c)
	if err != nil {
		return nil, err
	}
	recs, err := s.sightingSvc.Sightings(c.r.Context(), iocScan)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	var groups map[string][]store.SightingRecord
	if rs != nil {
		groups = map[string][]store.SightingRecord{}
	}
	out := []IOC{}
	for _, ioc := range summarizeGrouped(recs, s.policyIndex(), groups) {
		if typ != "" && ioc.Indicator.Type != typ {
			continue
		}
		if text != "" && !strings.Contains(strings.ToLower(ioc.Indicator.Value), text) {
			continue
		}
		out = append(out, ioc)
		if sortBy != "risk" && len(out) >= n {
			break
		}
	}
	if rs == nil {
		return out, nil
	}
	// Scored: the page only, or with sort=risk every candidate, which
	// are the indicators of the iocScan most recent sightings: the work
	// is bounded by iocScan, never by what the store holds.
	reports, err := s.reportSvc.Reports(c.r.Context(), reportScan)
	if err != nil {
		return nil, fmt.Errorf("reports: %w", err)
	}
	byInd := map[string][]store.ReportRecord{}
	for _, r := range reports {
		k := r.Report.Indicator.Key()
		byInd[k] = append(byInd[k], r)
	}
	for i := range out {
		k := out[i].Indicator.Key()
		score := rs.Risk(out[i].Indicator, groups[k], byInd[k], at).Score
		out[i].Risk = &score
	}
	if sortBy == "risk" {
		slices.SortStableFunc(out, func(a, b IOC) int {
			return cmp.Or(cmp.Compare(*b.Risk, *a.Risk), cmp.Compare(a.Indicator.Key(), b.Indicator.Key()))
		})
		out = out[:min(n, len(out))]
	}
	return out, nil
}

func getIOC(s *Server, c *call) (any, error) {
	ind, err := parseIndicator(c.r.PathValue("indicator"), c.r.URL.Query().Get("type"))
	if err != nil {
		return nil, err
	}
	at, err := s.riskAt(c)
	if err != nil {
		return nil, err
	}
	recs, err := s.sightingSvc.SightingsFor(c.r.Context(), ind)
	if err != nil {
		return nil, fmt.Errorf("sightings of %s: %w", ind.Value, err)
	}
	x := s.policyIndex()
	reports, rrecs, err := s.reportsOfRecords(c, ind)
	if err != nil {
		return nil, err
	}
	d := IOCDetail{IOC: IOC{Indicator: ind}, SightingList: []Sighting{}, PolicyList: []PolicyView{}, ReportList: reports}
	if sum := summarize(recs, x); len(sum) > 0 {
		d.IOC = sum[0]
	}
	d.IOC.Policies = policyTags(x, ind)
	names := s.attackNamer()
	for i := len(recs) - 1; i >= 0; i-- { // newest first
		d.SightingList = append(d.SightingList, sightingFrom(recs[i]))
		names.name(&d.SightingList[len(d.SightingList)-1])
	}
	d.PolicyList = append(d.PolicyList, x.covering(ind)...)
	if len(d.SightingList) == 0 && len(d.PolicyList) == 0 && len(d.ReportList) == 0 {
		return nil, fmt.Errorf("indicator %s: %w", ind.Value, ErrNotFound)
	}
	if rs := s.riskService(); rs != nil {
		r := rs.Risk(ind, recs, rrecs, at)
		d.Risk = &r
		score := r.Score
		d.IOC.Risk = &score
	}
	return d, nil
}

// reportsOfRecords is reportsOf that also returns the records, for the
// risk score.
func (s *Server) reportsOfRecords(c *call, ind intel.Indicator) ([]Report, []store.ReportRecord, error) {
	recs, err := s.reportSvc.Reports(c.r.Context(), reportScan)
	if err != nil {
		return nil, nil, fmt.Errorf("reports: %w", err)
	}
	out := []Report{}
	var mine []store.ReportRecord
	var sites map[string]string
	for _, r := range recs {
		if r.Report.Indicator != ind {
			continue
		}
		if sites == nil {
			sites = s.sites(c)
		}
		out = append(out, reportFrom(r, sites, s.now()))
		mine = append(mine, r)
	}
	return out, mine, nil
}
