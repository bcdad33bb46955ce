package admin

import (
	"fmt"
	"sort"
	"strings"

	"github.com/meshward/meshward/intel"
	"github.com/meshward/meshward/store"
)

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
	recs, err := s.sightingSvc.Sightings(c.r.Context(), iocScan)
	if err != nil {
		return nil, fmt.Errorf("sightings: %w", err)
	}
	out := []IOC{}
	for _, ioc := range summarize(recs, s.policyIndex()) {
		if typ != "" && ioc.Indicator.Type != typ {
			continue
		}
		if text != "" && !strings.Contains(strings.ToLower(ioc.Indicator.Value), text) {
			continue
		}
		out = append(out, ioc)
		if len(out) >= n {
			break
		}
	}
	return out, nil
}

func getIOC(s *Server, c *call) (any, error) {
	ind, err := parseIndicator(c.r.PathValue("indicator"), c.r.URL.Query().Get("type"))
	if err != nil {
		return nil, err
	}
	recs, err := s.sightingSvc.SightingsFor(c.r.Context(), ind)
	if err != nil {
		return nil, fmt.Errorf("sightings of %s: %w", ind.Value, err)
	}
	x := s.policyIndex()
	reports, err := s.reportsOf(c, ind)
	if err != nil {
		return nil, err
	}
	d := IOCDetail{IOC: IOC{Indicator: ind}, SightingList: []Sighting{}, PolicyList: []PolicyView{}, ReportList: reports}
	if sum := summarize(recs, x); len(sum) > 0 {
		d.IOC = sum[0]
	}
	d.IOC.Policies = policyTags(x, ind)
	for i := len(recs) - 1; i >= 0; i-- { // newest first
		d.SightingList = append(d.SightingList, sightingFrom(recs[i]))
	}
	d.PolicyList = append(d.PolicyList, x.covering(ind)...)
	if len(d.SightingList) == 0 && len(d.PolicyList) == 0 && len(d.ReportList) == 0 {
		return nil, fmt.Errorf("indicator %s: %w", ind.Value, ErrNotFound)
	}
	return d, nil
}
